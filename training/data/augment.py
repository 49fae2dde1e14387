"""Training augmentation of aligned face crops (numpy + OpenCV; used by both backends).

Faces are already aligned to a template, so the default augmentation stays light (as in
insightface's ``RandomHorizontalFlip`` only, FaceNet's random crop + flip): a mirror, a small
random crop resized back, and colour jitter. The flip is returned so distillation can use the
teacher's embedding of the mirrored face (``emb_flip``) as the target of a flipped image.

Distillation from a teacher *model* (targets computed from the augmented pixels themselves)
can afford much more: ``AugmentConfig.strong()`` adds a random similarity (rotation, scale,
shift: the alignment errors a detector makes), grey-scale and blur (low-resolution photos).
Beyer et al. 2022 ("a good teacher is patient and consistent") show that such aggressive,
consistent augmentation is what lets a student match its teacher on a small data set.

The tf.data backend runs this same function through ``tf.numpy_function`` with the same
per-image seeds, so both backends augment identically.
"""

from dataclasses import asdict, dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    """What :func:`augment_face` does; all off is ``AugmentConfig.off()``.

    Attributes:
        flip: mirror with probability 0.5.
        crop_min_scale: side of the random square crop, as a fraction of the image side, is
            drawn from [crop_min_scale, 1]; 1 disables cropping.
        brightness: add U(-b, b) * 255 to all channels.
        contrast: scale deviations from the mean by U(1-c, 1+c).
        saturation: blend with the grey image by U(1-s, 1+s).
        rotation: random rotation about the centre, U(-r, r) degrees (0: off).
        scale: random zoom U(1-s, 1+s) about the centre (0: off).
        shift: random translation, U(-t, t) of the side on each axis (0: off).
        grayscale: probability of turning the face grey (kept as 3 channels).
        blur: probability of a down-and-up-sampling blur to 1/2..1/4 of the side.
    """

    flip: bool = True
    crop_min_scale: float = 0.9
    brightness: float = 0.1
    contrast: float = 0.1
    saturation: float = 0.1
    rotation: float = 0.0
    scale: float = 0.0
    shift: float = 0.0
    grayscale: float = 0.0
    blur: float = 0.0

    def __post_init__(self):
        if not 0.0 < self.crop_min_scale <= 1.0:
            raise ValueError(f"crop_min_scale must be in (0, 1]; received {self.crop_min_scale}")
        for name in ("brightness", "contrast", "saturation"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1); received {value}")
        for name in ("grayscale", "blur"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} is a probability; received {getattr(self, name)}")
        if not 0.0 <= self.rotation <= 90.0:
            raise ValueError(f"rotation must be in [0, 90] degrees; received {self.rotation}")
        if not 0.0 <= self.scale < 1.0 or not 0.0 <= self.shift < 0.5:
            raise ValueError(f"scale must be in [0, 1) and shift in [0, 0.5); received "
                             f"{self.scale}, {self.shift}")

    @classmethod
    def off(cls):
        return cls(flip=False, crop_min_scale=1.0, brightness=0.0, contrast=0.0, saturation=0.0)

    @classmethod
    def strong(cls):
        """For distillation from a teacher model: alignment-error geometry, stronger colour,
        grey-scale and blur."""
        return cls(flip=True, crop_min_scale=1.0, brightness=0.2, contrast=0.3,
                   saturation=0.5, rotation=10.0, scale=0.1, shift=0.06, grayscale=0.1,
                   blur=0.2)

    @classmethod
    def named(cls, name):
        """``--augmentation`` values: light (the default), strong, off."""
        presets = {"light": cls, "strong": cls.strong, "off": cls.off}
        if name not in presets:
            raise ValueError(f"unknown augmentation {name!r}; choose from {sorted(presets)}")
        return presets[name]()

    @property
    def enabled(self):
        return self != AugmentConfig.off()

    def to_dict(self):
        return asdict(self)


# ITU-R BT.601 luma, as tf.image.rgb_to_grayscale and PIL's "L".
_LUMA = np.array([0.299, 0.587, 0.114])


def augment_face(rgb, rng, config=AugmentConfig()):
    """Randomly augment one face.

    Args:
        rgb: uint8 RGB (H, W, 3).
        rng: ``numpy.random.Generator`` (a per-image seeded one for reproducible runs).
        config: :class:`AugmentConfig`.
    Returns:
        (uint8 RGB (H, W, 3), flipped bool).
    """
    out = rgb
    h, w = rgb.shape[:2]
    # 1. Draw every random number up front, in a fixed order, so results do not depend on
    #    which steps are enabled later in the function.
    flip = bool(rng.random() < 0.5) and config.flip
    scale = rng.uniform(config.crop_min_scale, 1.0)
    corner = rng.random(2)
    jitter = rng.uniform(-1.0, 1.0, size=3) * np.array(
        [config.brightness, config.contrast, config.saturation])
    # Drawn after the light augmentation's numbers, so those stay what they were.
    geometry = rng.uniform(-1.0, 1.0, size=4) * np.array(
        [config.rotation, config.scale, config.shift, config.shift])
    grey, blur = rng.random(2) < np.array([config.grayscale, config.blur])
    blur_factor = rng.uniform(2.0, 4.0)
    # 2. Geometry: crop a square and resize it back to the input size.
    if config.crop_min_scale < 1.0:
        side_h, side_w = max(1, round(h * scale)), max(1, round(w * scale))
        y0, x0 = int(corner[0] * (h - side_h + 1)), int(corner[1] * (w - side_w + 1))
        if (side_h, side_w) != (h, w):
            out = cv2.resize(out[y0:y0 + side_h, x0:x0 + side_w], (w, h),
                             interpolation=cv2.INTER_LINEAR)
    if geometry.any():
        matrix = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), float(geometry[0]),
                                         1.0 + float(geometry[1]))
        matrix[:, 2] += geometry[2:] * np.array([w, h])
        out = cv2.warpAffine(np.ascontiguousarray(out), matrix, (w, h), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REFLECT_101)
    if flip:
        out = out[:, ::-1]
    if blur:
        small = (max(1, round(w / blur_factor)), max(1, round(h / blur_factor)))
        out = cv2.resize(cv2.resize(np.ascontiguousarray(out), small,
                                    interpolation=cv2.INTER_AREA), (w, h),
                         interpolation=cv2.INTER_LINEAR)
    # 3. Colour: saturation, contrast and brightness compose into one affine colour map
    #    out = a*s*x + a*(1-s)*luma(x) + (1-a)*mean_after_saturation + brightness*255,
    #    applied by cv2.transform in a single uint8 pass (rounded, saturated to 0..255).
    if config.brightness or config.contrast or config.saturation:
        a, sat = 1.0 + jitter[1], 1.0 + jitter[2]
        mix = a * sat * np.eye(3) + a * (1.0 - sat) * np.outer(np.ones(3), _LUMA)
        mean = np.asarray(cv2.mean(out)[:3])
        mean = sat * mean + (1.0 - sat) * float(_LUMA @ mean)
        shift = (1.0 - a) * mean + jitter[0] * 255.0
        out = cv2.transform(np.ascontiguousarray(out), np.hstack([mix, shift[:, None]]))
    if grey:
        luma = np.rint(np.asarray(out, np.float64) @ _LUMA).clip(0, 255).astype(np.uint8)
        out = np.repeat(luma[..., None], 3, axis=2)
    return np.ascontiguousarray(out), flip


def image_rng(seed, epoch, index):
    """The generator for one image draw: a function of (seed, epoch, index) only."""
    return np.random.default_rng([int(seed), int(epoch), int(index)])
