"""Augmentation against float64 numpy references and known geometry."""

import numpy as np
import pytest

from training.data.augment import AugmentConfig, augment_face, image_rng

FACE = np.random.default_rng(0).integers(0, 256, (112, 112, 3), dtype=np.uint8)


def colour_reference(rgb, jitter):
    """Saturation (blend with BT.601 luma), then contrast about the mean, then brightness."""
    b, c, s = jitter
    x = rgb.astype(np.float64)
    gray = (x @ [0.299, 0.587, 0.114])[..., None]
    x = gray + (x - gray) * (1 + s)
    mean = x.mean(axis=(0, 1))
    x = mean + (x - mean) * (1 + c)
    return np.clip(np.rint(x + b * 255), 0, 255)


@pytest.mark.parametrize("seed", range(4))
def test_colour_matches_reference(seed):
    cfg = AugmentConfig(flip=False, crop_min_scale=1.0, brightness=0.2, contrast=0.3,
                        saturation=0.4)
    out, flipped = augment_face(FACE, image_rng(9, 0, seed), cfg)
    rng = image_rng(9, 0, seed)  # the documented draw order: flip, scale, corner, jitter
    rng.random(), rng.uniform(1.0, 1.0), rng.random(2)
    jitter = rng.uniform(-1, 1, 3) * [0.2, 0.3, 0.4]
    assert not flipped and out.dtype == np.uint8
    assert np.abs(out - colour_reference(FACE, jitter)).max() <= 1  # rounding at .5 only


def test_flip_only_mirrors_about_half_the_time():
    cfg = AugmentConfig(flip=True, crop_min_scale=1.0, brightness=0, contrast=0, saturation=0)
    flips = 0
    for i in range(40):
        out, flipped = augment_face(FACE, image_rng(0, 0, i), cfg)
        np.testing.assert_array_equal(out, FACE[:, ::-1] if flipped else FACE)
        flips += flipped
    assert 10 < flips < 30


def test_crop_zooms_in():
    ramp = np.tile(np.linspace(0, 255, 112).astype(np.uint8)[None, :, None], (112, 1, 3))
    cfg = AugmentConfig(flip=False, crop_min_scale=0.5, brightness=0, contrast=0, saturation=0)
    spans = []
    for i in range(10):
        out, _ = augment_face(ramp, image_rng(0, 0, i), cfg)
        assert out.shape == ramp.shape
        row = out[56, :, 0].astype(int)
        assert np.all(np.diff(row) >= 0)  # still a left-to-right ramp
        spans.append(row[-1] - row[0])
    assert max(spans) < 255 and min(spans) >= 255 * 0.5 - 3  # a crop of 50..100% of the side


def test_off_is_identity_and_seeded():
    out, flipped = augment_face(FACE, image_rng(0, 0, 0), AugmentConfig.off())
    assert not flipped and np.array_equal(out, FACE)
    assert not AugmentConfig.off().enabled and AugmentConfig().enabled
    a = augment_face(FACE, image_rng(1, 2, 3), AugmentConfig())[0]
    b = augment_face(FACE, image_rng(1, 2, 3), AugmentConfig())[0]
    c = augment_face(FACE, image_rng(1, 2, 4), AugmentConfig())[0]
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    with pytest.raises(ValueError):
        AugmentConfig(crop_min_scale=0.0)
