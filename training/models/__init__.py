"""Face-recognition backbones in Keras 3 (keras.ops only: TensorFlow and JAX backends)."""

from training.models.layers import L2Normalize
from training.models.registry import BACKBONES, get_backbone

__all__ = ["BACKBONES", "L2Normalize", "get_backbone"]
