"""tfface: face recognition in Keras 3 with a TensorFlow-free edge runtime.

Importing ``tfface`` is cheap and TensorFlow-free; detection (mtcnn, TensorFlow) is imported
only when a detector is created.
"""

__version__ = "0.1.0"

from tfface.core.image import load_image
from tfface.core.preprocess import normalize_face
from tfface.core.template import ARCFACE_112, face_template, umeyama_similarity
from tfface.errors import DataError, ImageError, ModelError, NoFaceError, TFFaceError

__all__ = [
    "ARCFACE_112",
    "DataError",
    "ImageError",
    "ModelError",
    "NoFaceError",
    "TFFaceError",
    "face_template",
    "load_image",
    "normalize_face",
    "umeyama_similarity",
]
