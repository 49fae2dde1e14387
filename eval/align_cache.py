"""Detect and align the photos of a benchmark once, caching the aligned crops on disk.

Every image yields a crop, so every pair is scored and stays in the denominator:

* a face was found: the face chosen by the policy, aligned to the ArcFace template with
  :class:`tfface.core.align.FaceAligner` (status ``"detected"``). Policy ``"central"`` (the
  default for benchmarks whose subject is centred, such as LFW) takes the detection nearest the
  image centre; ``"largest"`` the biggest box.
* no face passed the detector: the central square of side ``fallback_fraction`` x the shorter
  image side, resized to the crop size (status ``"no_face"``). For LFW-style 250 px photos
  with the subject centred, 0.6 is about the template's face scale. The image is recorded
  as a failure in the report.
* the file is missing or not an image: a mid-grey crop (status ``"unreadable"``), recorded
  as a failure; such a pair scores whatever the model gives a blank face.

The cache key is the image's absolute path, byte size and modification time plus the crop
size, policy and detector settings; a changed file or setting is aligned again. Entries are
``.npz`` files (no pickle) written atomically, so an interrupted run leaves a usable cache.
"""

import hashlib
import os
from dataclasses import dataclass, field

import cv2
import numpy as np
from tqdm import tqdm

from tfface.core.align import warp_face
from tfface.core.image import load_image
from tfface.errors import ImageError

CACHE_POLICIES = ("central", "largest")
STATUSES = ("detected", "no_face", "unreadable")


DETECTOR_CHOICES = ("mtcnn", "tflite")


def crop_cache(cache_dir, size, policy, detector="mtcnn", template=None):
    """The cache for ``--detector``: "mtcnn" (the mtcnn package, the default) or "tflite" (the
    TensorFlow-free TFLite cascade, same landmarks to 0.001 px and about 5x faster). Each
    detector has its own cache entries."""
    if detector not in DETECTOR_CHOICES:
        raise ValueError(f"unknown detector {detector!r}; choose from {DETECTOR_CHOICES}")
    if detector == "mtcnn":
        return AlignedCropCache(cache_dir, size, policy, template=template)
    from functools import partial

    from tfface.detectors import get_detector

    return AlignedCropCache(cache_dir, size, policy, template=template,
                            detector_factory=partial(get_detector, "tflite"),
                            detector_name="tflite-mtcnn")


def default_cache_dir():
    """``$XDG_CACHE_HOME/tfface/aligned`` (``~/.cache/tfface/aligned``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tfface", "aligned")


def _as_hw(size):
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = size
    return int(h), int(w)


def center_crop(rgb, size, fraction=0.6):
    """Central square of side ``fraction`` x the shorter side, resized to ``size``.

    Args:
        rgb: uint8 RGB (H, W, 3).
        size: int or (height, width) of the output.
    Returns:
        uint8 RGB (height, width, 3).
    """
    h, w = _as_hw(size)
    ih, iw = rgb.shape[:2]
    side = max(1, round(min(ih, iw) * fraction))
    y0, x0 = (ih - side) // 2, (iw - side) // 2
    crop = rgb[y0:y0 + side, x0:x0 + side]
    # Keep the template's aspect ratio (e.g. 112x96) by trimming the crop's width.
    cw = max(1, round(side * w / h))
    c0 = (side - cw) // 2 if cw <= side else 0
    crop = crop[:, c0:c0 + cw]
    interp = cv2.INTER_AREA if side > h else cv2.INTER_LINEAR
    return cv2.resize(crop, (w, h), interpolation=interp)


def load_aligned(path, size):
    """An already-aligned crop (e.g. a benchmark distributed aligned), resized to ``size``."""
    h, w = _as_hw(size)
    rgb = load_image(path)
    if rgb.shape[:2] != (h, w):
        interp = cv2.INTER_AREA if rgb.shape[0] > h else cv2.INTER_LINEAR
        rgb = cv2.resize(rgb, (w, h), interpolation=interp)
    return rgb


@dataclass
class AlignStats:
    """What an alignment pass did: counts by status, cache hits, failures and time."""

    counts: dict = field(default_factory=lambda: {s: 0 for s in STATUSES})
    cache_hits: int = 0
    failures: list = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self):
        return {"counts": dict(self.counts), "cache_hits": self.cache_hits,
                "failures": list(self.failures), "seconds": round(self.seconds, 2)}


class AlignedCropCache:
    """Aligned crops of photos, computed once and kept in ``cache_dir``.

    Args:
        cache_dir: folder for the cache, or None to keep nothing on disk.
        size: crop size, int or (height, width), normally the model's input size.
        policy: "central" or "largest" (see the module docstring).
        detector_factory: callable returning a :class:`tfface.core.detection.FaceDetector`;
            called only on the first cache miss, so a fully cached run never loads a detector.
            Default: :func:`tfface.detect.default_detector`.
        fallback_fraction: side of the fallback centre crop, as a fraction of the shorter side.
        detector_name: names the detector and its settings in the cache key (default: the
            factory's ``__name__``, or "mtcnn" for the default detector).
    """

    def __init__(self, cache_dir, size=112, policy="central", detector_factory=None,
                 fallback_fraction=0.6, detector_name=None, template=None):
        if policy not in CACHE_POLICIES:
            raise ValueError(f"unknown policy {policy!r}; choose from {list(CACHE_POLICIES)}")
        if not 0.05 <= fallback_fraction <= 1.0:
            raise ValueError(f"fallback_fraction must be in [0.05, 1]; received {fallback_fraction}")
        self.cache_dir = os.fspath(cache_dir) if cache_dir is not None else None
        self.size = _as_hw(size)
        self.policy = policy
        self.fallback_fraction = float(fallback_fraction)
        self._factory = detector_factory
        self._detector = None
        if detector_name is None:
            detector_name = (getattr(detector_factory, "__name__", "custom")
                             if detector_factory else "mtcnn")
        self._detector_tag = str(detector_name)
        # A model with its own crop geometry (its card's 5 points); None = ArcFace template.
        self.template = None if template is None else np.asarray(template, np.float64)

    @property
    def detector(self):
        if self._detector is None:
            if self._factory is None:
                from tfface.detect import default_detector

                self._factory = default_detector
            self._detector = self._factory()
        return self._detector

    def _settings(self):
        tpl = "" if self.template is None else "|tpl:" + ",".join(
            f"{v:.4f}" for v in self.template.reshape(-1))
        return (f"{self.size[0]}x{self.size[1]}|{self.policy}|{self.fallback_fraction}|"
                f"{self._detector_tag}{tpl}")

    def _entry(self, path):
        st = os.stat(path)
        key = f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}|{self._settings()}"
        digest = hashlib.sha1(key.encode("utf-8")).hexdigest()
        return os.path.join(self.cache_dir, digest[:2], digest + ".npz")

    def _read(self, entry):
        try:
            with np.load(entry, allow_pickle=False) as z:
                crop, status = z["crop"], str(z["status"])
        except (OSError, ValueError, KeyError, EOFError):
            return None  # damaged entry: align again
        if crop.shape != (*self.size, 3) or status not in STATUSES:
            return None
        return crop, status

    def _write(self, entry, crop, status, score):
        os.makedirs(os.path.dirname(entry), exist_ok=True)
        tmp = f"{entry}.{os.getpid()}.tmp.npz"
        np.savez(tmp, crop=crop, status=np.array(status), score=np.float32(score))
        os.replace(tmp, entry)

    def _align(self, path):
        """(crop, status, score) for one photo, without the cache."""
        try:
            rgb = load_image(path)
        except ImageError:
            return np.full((*self.size, 3), 128, np.uint8), "unreadable", 0.0
        faces = self.detector.detect(rgb, policy=self.policy)
        if not faces:
            return center_crop(rgb, self.size, self.fallback_fraction), "no_face", 0.0
        face = faces[0]
        return (warp_face(rgb, face.landmarks, self.size, template=self.template), "detected",
                float(face.score))

    def get(self, path):
        """Aligned crop of one photo.

        Returns:
            (crop uint8 RGB (h, w, 3), status, from_cache bool).
        """
        entry = None
        if self.cache_dir is not None and os.path.isfile(path):
            entry = self._entry(path)
            if os.path.isfile(entry):
                hit = self._read(entry)
                if hit is not None:
                    return hit[0], hit[1], True
        crop, status, score = self._align(path)
        if entry is not None and status != "unreadable":
            self._write(entry, crop, status, score)
        return crop, status, False

    def align_all(self, paths, progress=True, desc="align"):
        """Aligned crops of many photos.

        Returns:
            crops uint8 (N, h, w, 3), statuses list of N str, :class:`AlignStats`.
        """
        import time

        t0 = time.perf_counter()
        stats = AlignStats()
        crops = np.empty((len(paths), *self.size, 3), np.uint8)
        statuses = []
        for i, p in enumerate(tqdm(paths, desc=desc, unit="img", disable=not progress,
                                   dynamic_ncols=True)):
            crop, status, hit = self.get(p)
            crops[i] = crop
            statuses.append(status)
            stats.counts[status] += 1
            stats.cache_hits += int(hit)
            if status != "detected":
                stats.failures.append({"path": os.fspath(p), "status": status})
        stats.seconds = time.perf_counter() - t0
        return crops, statuses, stats
