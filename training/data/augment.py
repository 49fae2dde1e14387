"""Training augmentation of aligned face crops (numpy + OpenCV; used by both backends).

Faces are already aligned to a template, so augmentation stays light (as in insightface's
``RandomHorizontalFlip`` only, FaceNet's random crop + flip): a mirror, a small random crop
resized back, and colour jitter. The flip is returned so distillation can use the teacher's
embedding of the mirrored face (``emb_flip``) as the target of a flipped image.

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
    """

    flip: bool = True
    crop_min_scale: float = 0.9
    brightness: float = 0.1
    contrast: float = 0.1
    saturation: float = 0.1

    def __post_init__(self):
        if not 0.0 < self.crop_min_scale <= 1.0:
            raise ValueError(f"crop_min_scale must be in (0, 1]; received {self.crop_min_scale}")
        for name in ("brightness", "contrast", "saturation"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1); received {value}")

    @classmethod
    def off(cls):
        return cls(flip=False, crop_min_scale=1.0, brightness=0.0, contrast=0.0, saturation=0.0)

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
    # 2. Geometry: crop a square and resize it back to the input size.
    if config.crop_min_scale < 1.0:
        side_h, side_w = max(1, round(h * scale)), max(1, round(w * scale))
        y0, x0 = int(corner[0] * (h - side_h + 1)), int(corner[1] * (w - side_w + 1))
        if (side_h, side_w) != (h, w):
            out = cv2.resize(out[y0:y0 + side_h, x0:x0 + side_w], (w, h),
                             interpolation=cv2.INTER_LINEAR)
    if flip:
        out = out[:, ::-1]
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
    return np.ascontiguousarray(out), flip


def image_rng(seed, epoch, index):
    """The generator for one image draw: a function of (seed, epoch, index) only."""
    return np.random.default_rng([int(seed), int(epoch), int(index)])
