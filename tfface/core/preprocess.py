"""The one preprocessing function: every model in tfface sees pixels through it.

Aligned faces are RGB uint8; models take float32 ``(x - 127.5) / 128``. Keeping the constants
here (and in every model card) means Keras training, evaluation and the TFLite runtime feed
identical numbers.
"""

import numpy as np

COLOR_ORDER = "RGB"
PIXEL_MEAN = 127.5
PIXEL_SCALE = 128.0


def normalize_face(images):
    """Map aligned faces to model input.

    Args:
        images: uint8 (or float in 0..255) RGB, shape (H, W, 3) or (N, H, W, 3).
    Returns:
        float32 array of the same shape, ``(x - 127.5) / 128`` (range about -1..1).
    """
    arr = np.asarray(images)
    if arr.ndim not in (3, 4) or arr.shape[-1] != 3:
        raise ValueError(f"expected RGB images (H, W, 3) or (N, H, W, 3); received shape {arr.shape}")
    return (arr.astype(np.float32) - PIXEL_MEAN) / PIXEL_SCALE


def denormalize_face(inputs):
    """Inverse of :func:`normalize_face`, back to uint8 RGB (for plots and debugging)."""
    arr = np.asarray(inputs, dtype=np.float32) * PIXEL_SCALE + PIXEL_MEAN
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


def preprocessing_card():
    """The preprocessing as data, for model cards and training configs."""
    return {
        "color_order": COLOR_ORDER,
        "mean": [PIXEL_MEAN] * 3,
        "std": [PIXEL_SCALE] * 3,
        "formula": "(x - 127.5) / 128",
    }
