"""FaceVerifier: one API for `.keras` and `.tflite` models — photos in, same person or not out.

With a `.tflite` model and the TFLite MTCNN detector, nothing here imports TensorFlow, so the
same code runs on a Raspberry Pi with only ``tfface[lite]`` installed.
"""

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tfface.core.align import FaceAligner
from tfface.core.image import describe_source, load_image
from tfface.errors import ModelError
from tfface.model_card import card_template, card_threshold, model_id

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = Path(os.environ.get("TFFACE_MODELS_DIR", PACKAGE_ROOT / "saved_models"))
# Named models shipped in saved_models/ (first existing file wins), and the default name.
NAMED_MODELS = {
    # dlib's ResNet as full int8: 99.0% on LFW, 5.7 MB. The distilled MobileFaceNet
    # (80% on LFW so far, see README) is selectable but not yet good enough to be the default.
    "default": ["dlib_resnet/dlib_resnet_int8.tflite"],
    "mobilefacenet-int8": ["mobilefacenet/mobilefacenet_int8.tflite"],
    "mobilefacenet-float16": ["mobilefacenet/mobilefacenet_float16.tflite"],
    "mobilefacenet-keras": ["mobilefacenet/mobilefacenet.keras"],
    "dlib-resnet": ["dlib_resnet/dlib_resnet_float16.tflite"],
    "dlib-resnet-int8": ["dlib_resnet/dlib_resnet_int8.tflite"],
    "dlib-resnet-keras": ["dlib_resnet/dlib_resnet.keras"],
}
# Used when a model card has no calibrated threshold (cosine similarity of unit embeddings).
FALLBACK_THRESHOLD = 0.5


def resolve_model(model=None):
    """A model file path from a path or a shipped model's name (None: the default)."""
    name = "default" if model is None else str(model)
    if name in NAMED_MODELS:
        for rel in NAMED_MODELS[name]:
            path = MODELS_DIR / rel
            if path.is_file():
                return path
        raise ModelError(f"model {name!r} is not installed in {MODELS_DIR} (looked for "
                         f"{', '.join(NAMED_MODELS[name])}); pass --model PATH")
    path = Path(name)
    if not path.is_file():
        raise ModelError(f"model file not found: {name} (or use one of "
                         f"{', '.join(sorted(NAMED_MODELS))})")
    return path


def load_embedder(path, num_threads=None):
    """TFLiteEmbedder or KerasEmbedder by file extension."""
    suffix = Path(path).suffix.lower()
    if suffix == ".tflite":
        from tflite.embedder import TFLiteEmbedder

        return TFLiteEmbedder(path, num_threads=num_threads)
    if suffix == ".keras":
        from tfface.keras_embedder import KerasEmbedder

        return KerasEmbedder(path)
    raise ModelError(f"{path}: unknown model type {suffix or '(none)'}; expected .tflite or .keras")


def make_detector(name="auto", num_threads=None, **kwargs):
    """"tflite" (TensorFlow-free), "mtcnn" (package), or "auto": tflite when its models are
    shipped, else mtcnn."""
    from tfface.detectors import get_detector

    if name == "auto":
        try:
            return get_detector("tflite", num_threads=num_threads, **kwargs)
        except (ModelError, ImportError):
            return get_detector("mtcnn", **kwargs)
    if name == "tflite":
        return get_detector("tflite", num_threads=num_threads, **kwargs)
    return get_detector(name, **kwargs)


@dataclass(frozen=True)
class Verification:
    """Outcome of comparing two faces."""

    similarity: float  # cosine similarity of the unit embeddings, -1..1
    distance: float  # Euclidean distance of the unit embeddings, 0..2
    threshold: float  # similarity at or above which the faces are the same person
    same: bool

    def to_dict(self):
        return asdict(self)


class FaceVerifier:
    """Embed and compare faces with a `.keras` or `.tflite` model.

    Args:
        model: model path, a shipped model's name ("default", "dlib-resnet", ...), or None.
        threshold: cosine-similarity threshold; default: the model card's calibrated one.
        detector: "auto", "tflite" or "mtcnn", or a FaceDetector instance.
        num_threads: CPU threads for the TFLite interpreters.
        min_score: minimum face-detection score.
    """

    def __init__(self, model=None, threshold=None, detector="auto", num_threads=None,
                 min_score=0.9):
        self.model_path = resolve_model(model)
        self.embedder = load_embedder(self.model_path, num_threads=num_threads)
        card = self.embedder.card
        self.card = card
        self.threshold = float(threshold) if threshold is not None else card_threshold(
            card, FALLBACK_THRESHOLD)
        if not isinstance(detector, str):
            self.detector = detector
        else:
            self.detector = make_detector(detector, num_threads=num_threads, min_score=min_score)
        # The card's landmark positions (in crop pixels) say where the model expects the
        # 5 points: the ArcFace template for our models, dlib's chip geometry for dlib's.
        landmarks = card_template(card)
        self.aligner = FaceAligner(self.detector, size=self.embedder.input_size,
                                   policy="largest",
                                   template=np.asarray(landmarks, np.float64) if landmarks
                                   else None)

    @property
    def model_id(self):
        """Identity of the model's weights (facebanks refuse embeddings of another model)."""
        return model_id(self.model_path)

    def embed_faces(self, image):
        """Every face of a photo: a list of (Face, unit embedding); [] when there is none."""
        rgb = load_image(image)
        faces = self.detector.detect(rgb, policy="all")
        if not faces:
            return []
        from tfface.core.align import warp_face

        crops = np.stack([warp_face(rgb, f.landmarks, self.input_size,
                                    template=self.aligner.template) for f in faces])
        return list(zip(faces, self.embedder(crops)))

    @property
    def input_size(self):
        return self.embedder.input_size

    def align(self, image):
        """uint8 RGB crop of the largest face of a photo; NoFaceError when there is none."""
        return self.aligner.align_one(image)

    def embed(self, images, aligned=False):
        """Unit-length embeddings (N, D) of photos (largest face each) or of aligned crops.

        Args:
            images: a list of photos (paths, bytes or arrays), or with ``aligned=True`` uint8
                crops of the model's input size (list or (N, H, W, 3) array).
        """
        if aligned:
            crops = np.stack([load_image(c) for c in images]) if not (
                isinstance(images, np.ndarray) and images.ndim == 4) else images
        else:
            crops = np.stack([self.align(img) for img in images])
        return self.embedder(crops)

    def compare(self, emb_a, emb_b):
        """:class:`Verification` of two unit embeddings."""
        sim = float(np.clip(np.dot(emb_a, emb_b), -1.0, 1.0))
        dist = float(np.sqrt(max(0.0, 2.0 - 2.0 * sim)))
        return Verification(similarity=sim, distance=dist, threshold=self.threshold,
                            same=bool(sim >= self.threshold))

    def verify(self, a, b):
        """Are the largest faces of photos ``a`` and ``b`` the same person?"""
        emb = self.embed([a, b])
        return self.compare(emb[0], emb[1])

    def describe(self):
        return {"model": str(self.model_path), "threshold": self.threshold,
                "detector": type(self.detector).__name__, **self.embedder.describe()}

    def __repr__(self):
        return f"FaceVerifier({str(self.model_path)!r}, threshold={self.threshold:.4f})"


def source_name(image):
    return describe_source(image)
