"""The one alignment: warp a photo so its 5 landmarks land on the face template."""

from dataclasses import dataclass

import cv2
import numpy as np

from tfface.core.detection import Face
from tfface.core.image import describe_source, load_image
from tfface.core.template import alignment_matrix
from tfface.errors import NoFaceError


def warp_face(rgb, landmarks, size=112, border_value=0, template=None):
    """Crop and align one face.

    Args:
        rgb: uint8 RGB (H, W, 3) photo.
        landmarks: (5, 2) landmarks in photo pixels (see :class:`tfface.core.detection.Face`).
        size: crop size, int or (height, width).
        template: optional 5x2 target points in crop pixels (default: the ArcFace template
            scaled to ``size``).
    Returns:
        uint8 RGB (height, width, 3) aligned crop.
    """
    h, w = (size, size) if isinstance(size, (int, np.integer)) else size
    m = alignment_matrix(landmarks, (h, w), template=template)
    return cv2.warpAffine(np.asarray(rgb), m, (int(w), int(h)), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(border_value,) * 3)


@dataclass(frozen=True)
class AlignedFace:
    """An aligned crop with the detection it came from."""

    crop: np.ndarray
    face: Face


class FaceAligner:
    """Detect, select and align faces: the path every part of tfface uses to go from a photo
    to model input.

    Args:
        detector: a :class:`tfface.core.detection.FaceDetector`.
        size: crop size (int or (height, width)); 112 for ArcFace/MobileFaceNet, 160 FaceNet.
        policy: "largest", "central" or "all".
        template: optional 5x2 target points for a model with its own crop geometry.
    """

    def __init__(self, detector, size=112, policy="largest", template=None):
        self.detector = detector
        self.size = size
        self.policy = policy
        self.template = template

    def align(self, image, policy=None):
        """All selected faces of an image, as :class:`AlignedFace`; raises NoFaceError."""
        rgb = load_image(image)
        faces = self.detector.detect(rgb, policy=policy or self.policy)
        if not faces:
            raise NoFaceError(f"{describe_source(image)}: no face found")
        return [AlignedFace(crop=warp_face(rgb, f.landmarks, self.size, template=self.template),
                            face=f) for f in faces]

    def align_one(self, image):
        """The crop of the face chosen by the policy ("largest" unless "central" is set)."""
        policy = self.policy if self.policy != "all" else "largest"
        return self.align(image, policy=policy)[0].crop
