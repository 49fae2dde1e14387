"""Detector-independent face detection logic: results, selection policies, downscaling of large
images, padding of tight crops. Numpy-only, so the TFLite MTCNN of the edge runtime and the
mtcnn-package detector share it; a backend implements only :meth:`FaceDetector.detect_raw`.
"""

from dataclasses import dataclass

import cv2
import numpy as np

from tfface.core.image import describe_source, load_image
from tfface.core.template import LANDMARK_NAMES
from tfface.errors import NoFaceError

POLICIES = ("largest", "central", "all")


@dataclass(frozen=True)
class Face:
    """One detected face in original-image pixel coordinates.

    Attributes:
        box: float (4,) x1, y1, x2, y2.
        score: detector confidence in 0..1.
        landmarks: float (5, 2) (x, y) of left eye, right eye, nose, left and right mouth
            corner (left/right as seen in the image).
    """

    box: np.ndarray
    score: float
    landmarks: np.ndarray

    @property
    def width(self):
        return float(self.box[2] - self.box[0])

    @property
    def height(self):
        return float(self.box[3] - self.box[1])

    @property
    def size(self):
        """Shorter side of the box in pixels."""
        return min(self.width, self.height)

    @property
    def area(self):
        return self.width * self.height

    @property
    def center(self):
        return float(self.box[0] + self.box[2]) / 2.0, float(self.box[1] + self.box[3]) / 2.0

    def to_dict(self):
        """Plain Python types, ready for JSON."""
        return {
            "box": [round(float(v), 2) for v in self.box],
            "score": round(float(self.score), 5),
            "landmarks": {
                name: [round(float(x), 2), round(float(y), 2)]
                for name, (x, y) in zip(LANDMARK_NAMES, self.landmarks)
            },
        }


def select_faces(faces, policy, image_shape):
    """Pick faces by policy: the largest box, the box nearest the image centre, or all
    (sorted by score, best first)."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose from {list(POLICIES)}")
    if not faces:
        return []
    if policy == "all":
        return sorted(faces, key=lambda f: -f.score)
    if policy == "largest":
        return [max(faces, key=lambda f: (f.area, f.score))]
    cy, cx = image_shape[0] / 2.0, image_shape[1] / 2.0
    return [min(faces, key=lambda f: ((f.center[0] - cx) ** 2 + (f.center[1] - cy) ** 2, -f.score))]


class FaceDetector:
    """Base detector: finds faces with a backend, maps them back to the original image,
    filters by score and size, and applies a policy.

    Args:
        min_score: drop faces whose confidence is below this.
        min_face_size: drop faces whose shorter box side is below this many pixels (in the
            original image); also tells the backend the smallest face worth searching.
        max_side: images whose longer side exceeds this are downscaled for detection
            (results are mapped back); None to never downscale.
        pad_ratio: when nothing is found, detect again on the image padded by this fraction of
            its size on every side; rescues tight crops where the face fills the image.
            0 disables the retry.
    """

    def __init__(self, min_score=0.9, min_face_size=20, max_side=1280, pad_ratio=0.3):
        if not 0.0 <= min_score <= 1.0:
            raise ValueError(f"min_score must be in [0, 1]; received {min_score}")
        if min_face_size < 1:
            raise ValueError(f"min_face_size must be >= 1; received {min_face_size}")
        if max_side is not None and max_side < 32:
            raise ValueError(f"max_side must be >= 32 or None; received {max_side}")
        self.min_score = float(min_score)
        self.min_face_size = int(min_face_size)
        self.max_side = max_side
        self.pad_ratio = float(pad_ratio)

    # --- backend -----------------------------------------------------------------------------
    def detect_raw(self, rgb, min_face_size):
        """Backend hook. Returns boxes (N, 4) xyxy, scores (N,), landmarks (N, 5, 2) in the
        pixel coordinates of ``rgb``."""
        raise NotImplementedError

    # --- public ------------------------------------------------------------------------------
    def detect(self, image, policy="all"):
        """Detect faces in an image (any source :func:`load_image` accepts).

        Returns:
            list of :class:`Face` (possibly empty), in original-image coordinates.
        """
        rgb = load_image(image)
        faces = self._detect_scaled(rgb)
        if not faces and self.pad_ratio > 0:
            faces = self._detect_padded(rgb)
        return select_faces(faces, policy, rgb.shape)

    def detect_one(self, image, policy="largest"):
        """The single face chosen by ``policy`` ("largest" or "central"); raises NoFaceError."""
        if policy == "all":
            raise ValueError("detect_one needs policy 'largest' or 'central'")
        faces = self.detect(image, policy=policy)
        if not faces:
            raise NoFaceError(
                f"{describe_source(image)}: no face found (min_score={self.min_score}, "
                f"min_face_size={self.min_face_size}px)")
        return faces[0]

    # --- internals ---------------------------------------------------------------------------
    def _detect_scaled(self, rgb):
        h, w = rgb.shape[:2]
        scale = 1.0
        work = rgb
        if self.max_side is not None and max(h, w) > self.max_side:
            scale = self.max_side / float(max(h, w))
            work = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
                              interpolation=cv2.INTER_AREA)
        min_size = max(12.0, self.min_face_size * scale)
        boxes, scores, landmarks = self.detect_raw(work, min_size)
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) / scale
        landmarks = np.asarray(landmarks, dtype=np.float64).reshape(-1, 5, 2) / scale
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        return self._filter(boxes, scores, landmarks)

    def _detect_padded(self, rgb):
        h, w = rgb.shape[:2]
        py, px = int(round(h * self.pad_ratio)), int(round(w * self.pad_ratio))
        padded = cv2.copyMakeBorder(rgb, py, py, px, px, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        faces = self._detect_scaled(padded)
        shift = np.array([px, py], dtype=np.float64)
        out = []
        for f in faces:
            box = f.box - np.concatenate([shift, shift])
            box = np.clip(box, [0, 0, 0, 0], [w, h, w, h])
            out.append(Face(box=box, score=f.score, landmarks=f.landmarks - shift))
        return out

    def _filter(self, boxes, scores, landmarks):
        faces = []
        for box, score, lm in zip(boxes, scores, landmarks):
            face = Face(box=box, score=float(score), landmarks=lm)
            if score < self.min_score or face.size < self.min_face_size:
                continue
            if not np.isfinite(lm).all():
                continue
            faces.append(face)
        return faces
