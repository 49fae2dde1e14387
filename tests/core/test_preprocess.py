import numpy as np
import pytest

from tfface.core.preprocess import denormalize_face, normalize_face


def test_normalize_formula():
    x = np.arange(256, dtype=np.uint8).repeat(3).reshape(16, 16, 3)
    out = normalize_face(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, (x.astype(np.float64) - 127.5) / 128.0, atol=1e-7)
    np.testing.assert_array_equal(denormalize_face(out), x)


def test_normalize_rejects_non_rgb():
    with pytest.raises(ValueError, match="RGB"):
        normalize_face(np.zeros((8, 8)))
