"""Detector registry: one name per backend, created on demand (no global cache)."""

from tfface.errors import ModelError


def _mtcnn(**kwargs):
    from tfface.detect import MTCNNDetector

    return MTCNNDetector(**kwargs)


def _tflite_mtcnn(**kwargs):
    try:
        from tflite.mtcnn import TFLiteMTCNNDetector
    except ImportError as err:
        raise ModelError(f"the TFLite MTCNN detector is not available: {err}") from err
    return TFLiteMTCNNDetector(**kwargs)


DETECTORS = {"mtcnn": _mtcnn, "tflite": _tflite_mtcnn}


def get_detector(name="mtcnn", **kwargs):
    """Create a detector by name: "mtcnn" (mtcnn package, TensorFlow) or "tflite" (the
    TensorFlow-free TFLite cascade). ``kwargs`` go to the detector (min_score, ...)."""
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; choose from {sorted(DETECTORS)}")
    return DETECTORS[name](**kwargs)
