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


NONE = {"flip": False, "crop_min_scale": 1.0, "brightness": 0.0, "contrast": 0.0,
        "saturation": 0.0}


def dot_image(x, y, side=112):
    img = np.zeros((side, side, 3), np.uint8)
    img[y - 1:y + 2, x - 1:x + 2] = 255
    return img


def centroid(img):
    w = img[..., 0].astype(np.float64)
    ys, xs = np.mgrid[:w.shape[0], :w.shape[1]]
    return np.array([(xs * w).sum(), (ys * w).sum()]) / w.sum()


@pytest.mark.parametrize("seed", range(6))
def test_rotation_keeps_the_radius_and_turns_at_most_r(seed):
    c = np.array([55.5, 55.5])  # the image centre
    src = np.array([85.0, 55.0])
    out, _ = augment_face(dot_image(85, 55), image_rng(1, 0, seed), AugmentConfig(
        **NONE, rotation=15.0))
    got = centroid(out) - c
    before = src - c
    assert abs(np.hypot(*got) - np.hypot(*before)) < 0.6  # a rotation keeps the radius
    turn = np.degrees(np.arctan2(got[1], got[0]) - np.arctan2(before[1], before[0]))
    assert abs(turn) <= 15.0 + 0.5


@pytest.mark.parametrize("seed", range(6))
def test_scale_and_shift_stay_in_their_ranges(seed):
    c = np.array([55.5, 55.5])
    out, _ = augment_face(dot_image(80, 40), image_rng(2, 0, seed), AugmentConfig(
        **NONE, scale=0.2))
    ratio = np.hypot(*(centroid(out) - c)) / np.hypot(*(np.array([80.0, 40.0]) - c))
    assert 0.8 - 0.02 <= ratio <= 1.2 + 0.02
    # the direction from the centre is kept: a zoom, no turn
    got, want = centroid(out) - c, np.array([80.0, 40.0]) - c
    assert abs(np.cross(got / np.hypot(*got), want / np.hypot(*want))) < 0.02
    out, _ = augment_face(dot_image(56, 56), image_rng(3, 0, seed), AugmentConfig(
        **NONE, shift=0.1))
    move = centroid(out) - np.array([56.0, 56.0])
    assert np.all(np.abs(move) <= 0.1 * 112 + 0.5)


def test_geometry_actually_varies():
    outs = [centroid(augment_face(dot_image(85, 55), image_rng(4, 0, i),
                                  AugmentConfig(**NONE, rotation=10.0, shift=0.05))[0])
            for i in range(8)]
    assert np.ptp(np.array(outs), axis=0).max() > 3.0


def test_grayscale_is_bt601_luma():
    out, _ = augment_face(FACE, image_rng(0, 0, 0), AugmentConfig(**NONE, grayscale=1.0))
    want = np.clip(np.rint(FACE.astype(np.float64) @ [0.299, 0.587, 0.114]), 0, 255)
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
    assert np.abs(out[..., 0] - want).max() <= 1


def test_blur_removes_fine_detail():
    checker = (np.indices((112, 112)).sum(0) % 2 * 255).astype(np.uint8)
    checker = np.repeat(checker[..., None], 3, axis=2)
    out, _ = augment_face(checker, image_rng(0, 0, 0), AugmentConfig(**NONE, blur=1.0))
    assert out.shape == checker.shape and out.dtype == np.uint8
    assert out.std() < 0.2 * checker.std()  # a 1-pixel checkerboard averages to grey
    assert abs(out.mean() - checker.mean()) < 3


def test_strong_preset_and_bad_values():
    strong = AugmentConfig.named("strong")
    assert strong.enabled and strong.rotation > 0 and strong.blur > 0
    assert AugmentConfig.named("light") == AugmentConfig()
    out, _ = augment_face(FACE, image_rng(0, 0, 0), strong)
    assert out.shape == FACE.shape and out.dtype == np.uint8
    for bad in ({"rotation": -1}, {"scale": 1.0}, {"shift": 0.5}, {"grayscale": 1.5}):
        with pytest.raises(ValueError):
            AugmentConfig(**bad)
    with pytest.raises(ValueError):
        AugmentConfig.named("extreme")
