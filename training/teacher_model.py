"""On-the-fly distillation targets from a teacher model (e.g. the imported dlib ResNet).

The student sees a 112x112 ArcFace-template crop, possibly flipped, cropped and colour-jittered.
Both crops come from the same 5 landmarks by similarity transforms, so the teacher's own crop
(its card's template and size, e.g. dlib's 150x150 chip) is one fixed similarity of the
student's crop. Warping every augmented student crop with it gives the teacher exactly the
pixels the student saw: targets for any augmentation and any unlabelled face folder, with no
precomputed .npz. (Where the teacher's crop reaches past the student's, it is black.)
"""

from pathlib import Path

import cv2
import numpy as np

from tfface.core.preprocess import denormalize_face
from tfface.core.template import face_template, umeyama_similarity
from tfface.errors import ModelError
from tfface.model_card import card_template


def load_teacher_embedder(path, num_threads=None):
    """A TFLite or Keras embedder of the teacher model file."""
    from tfface.verifier import load_embedder

    if not Path(path).is_file():
        raise ModelError(f"teacher model not found: {path}")
    return load_embedder(path, num_threads=num_threads)


class OnTheFlyTeacher:
    """Teacher embeddings of (augmented) student crops.

    Args:
        path: teacher model (.tflite or .keras) with its JSON card.
        student_size: the student's square crop size (ArcFace template).
        num_threads: TFLite threads.
    """

    def __init__(self, path, student_size=112, num_threads=None):
        self.path = str(path)
        self.embedder = load_teacher_embedder(path, num_threads)
        self.size = tuple(int(v) for v in self.embedder.input_size)
        points = card_template(self.embedder.card)
        teacher_points = (np.asarray(points, np.float64) if points is not None
                          else face_template(self.size))
        # student crop pixels -> teacher crop pixels
        self.matrix = umeyama_similarity(face_template(student_size), teacher_points)
        self.dim = int(self.embedder(np.zeros((1, *self.size, 3), np.uint8)).shape[-1])

    def warp(self, crops):
        """uint8 student crops (N, s, s, 3) -> uint8 teacher crops (N, H, W, 3)."""
        h, w = self.size
        return np.stack([cv2.warpAffine(c, self.matrix, (w, h), flags=cv2.INTER_LINEAR,
                                        borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
                         for c in crops])

    def __call__(self, images):
        """Normalised student inputs (N, s, s, 3) float -> float32 (N, D) teacher embeddings."""
        crops = denormalize_face(np.asarray(images, dtype=np.float32))
        return np.asarray(self.embedder(self.warp(crops)), dtype=np.float32)

    def describe(self):
        return {"teacher_model": self.path, "teacher_input_size": list(self.size),
                "teacher_dim": self.dim, "targets": "on the fly, from the augmented crops"}
