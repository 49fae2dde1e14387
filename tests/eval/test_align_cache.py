"""Aligned-crop cache: known-geometry alignment, no-face fallback, cache hits and invalidation."""

import os
import time

import numpy as np
import pytest
from PIL import Image

from eval.align_cache import AlignedCropCache, center_crop
from tfface.core.detection import FaceDetector
from tfface.core.template import ARCFACE_112

OFFSET = np.array([50.0, 60.0])  # the "face" sits at template + (50, 60) in every photo


class FakeDetector(FaceDetector):
    """Finds a face (template landmarks shifted by OFFSET) in images whose top-left pixel is
    bright; none in dark ones. Counts its calls."""

    calls = 0

    def __init__(self):
        super().__init__(min_score=0.5, min_face_size=20, pad_ratio=0.0)

    def detect_raw(self, rgb, min_face_size):
        FakeDetector.calls += 1
        if rgb[0, 0, 0] < 128:
            return np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2))
        lm = ARCFACE_112 + OFFSET
        box = np.array([[OFFSET[0], OFFSET[1], OFFSET[0] + 112, OFFSET[1] + 112]])
        return box, np.array([0.99]), lm[None]


def fake_factory():
    return FakeDetector()


def _photo(path, bright, seed):
    # Smooth content, so resampling methods agree to a few grey levels.
    small = np.random.default_rng(seed).integers(0, 256, (10, 10, 3), dtype=np.uint8)
    rgb = np.array(Image.fromarray(small).resize((250, 250), Image.BICUBIC))
    rgb[0, 0] = 255 if bright else 0
    Image.fromarray(rgb).save(path)  # PNG: lossless, so the test knows every pixel
    return rgb


def test_alignment_fallback_and_cache(tmp_path):
    face = _photo(tmp_path / "face.png", True, 0)
    noface = _photo(tmp_path / "noface.png", False, 1)
    paths = [str(tmp_path / "face.png"), str(tmp_path / "noface.png"),
             str(tmp_path / "missing.png")]
    cache = AlignedCropCache(tmp_path / "cache", 112, "central", fake_factory)
    FakeDetector.calls = 0
    crops, statuses, stats = cache.align_all(paths, progress=False)
    assert statuses == ["detected", "no_face", "unreadable"]
    # Pure translation: the aligned crop is the 112x112 window at the offset.
    x, y = OFFSET.astype(int)
    diff = np.abs(crops[0].astype(int) - face[y:y + 112, x:x + 112].astype(int))
    assert np.percentile(diff, 99) <= 1
    # No face: central square of 0.6 x 250 = 150 px, resized to 112 (checked via PIL).
    ref = np.asarray(Image.fromarray(noface[50:200, 50:200]).resize((112, 112), Image.BOX))
    assert np.abs(crops[1].astype(int) - ref.astype(int)).mean() < 3
    assert (crops[2] == 128).all()
    assert stats.counts == {"detected": 1, "no_face": 1, "unreadable": 1}
    assert [f["status"] for f in stats.failures] == ["no_face", "unreadable"]
    assert stats.cache_hits == 0 and FakeDetector.calls > 0

    # Second run: everything readable comes from the cache, the detector is never built.
    built = []
    cache2 = AlignedCropCache(tmp_path / "cache", 112, "central",
                              lambda: built.append(1) or FakeDetector(),
                              detector_name="fake_factory")
    crops2, statuses2, stats2 = cache2.align_all(paths, progress=False)
    assert built == [] and stats2.cache_hits == 2
    assert statuses2 == statuses
    np.testing.assert_array_equal(crops2, crops)

    # A changed file is aligned again.
    time.sleep(0.01)
    _photo(tmp_path / "noface.png", True, 2)
    os.utime(tmp_path / "noface.png", ns=(time.time_ns(), time.time_ns()))
    _, statuses3, stats3 = cache2.align_all(paths, progress=False)
    assert statuses3[:2] == ["detected", "detected"] and stats3.cache_hits == 1


def test_settings_change_the_key(tmp_path):
    _photo(tmp_path / "face.png", True, 0)
    p = str(tmp_path / "face.png")
    AlignedCropCache(tmp_path / "c", 112, "central", fake_factory).get(p)
    crop, _, hit = AlignedCropCache(tmp_path / "c", 112, "largest", fake_factory).get(p)
    assert not hit
    crop, _, hit = AlignedCropCache(tmp_path / "c", (112, 96), "central", fake_factory).get(p)
    assert not hit and crop.shape == (112, 96, 3)
    assert AlignedCropCache(tmp_path / "c", 112, "central", fake_factory).get(p)[2]


def test_center_crop_and_validation():
    rgb = np.arange(200 * 100 * 3, dtype=np.uint32).reshape(200, 100, 3).astype(np.uint8)
    out = center_crop(rgb, (50, 50), fraction=0.5)  # 50 px square around the centre: no resize
    np.testing.assert_array_equal(out, rgb[75:125, 25:75])
    with pytest.raises(ValueError, match="unknown policy"):
        AlignedCropCache(None, 112, "all")
    with pytest.raises(ValueError, match="fallback_fraction"):
        AlignedCropCache(None, 112, "central", fallback_fraction=2.0)


@pytest.mark.slow
def test_mtcnn_on_shared_lfw(shared_data, tmp_path, mtcnn_detector):
    paths = sorted(str(p) for p in (shared_data / "lfw" / "images").glob("A*/*.jpg"))[:6]
    cache = AlignedCropCache(tmp_path / "c", 112, "central", lambda: mtcnn_detector,
                             detector_name="mtcnn")
    crops, statuses, _ = cache.align_all(paths, progress=False)
    assert statuses.count("detected") >= 5
    assert crops.shape == (6, 112, 112, 3)
    _, _, again = cache.align_all(paths, progress=False)
    assert again.cache_hits == 6


def test_tflite_detector_cache_has_its_own_entries_and_matches_mtcnn(tmp_path, mtcnn_detector):
    """``--detector tflite`` aligns the same photos to (nearly) the same crops as the mtcnn
    package, and its entries never answer for the mtcnn detector's (or the reverse)."""
    from eval.align_cache import crop_cache
    from tests.conftest import ROOT

    paths = sorted(str(p) for p in (ROOT / "samples").glob("*.jpg"))[:2]
    tfl = crop_cache(tmp_path, 112, "central", "tflite")
    crops_t, st_t, stats_t = tfl.align_all(paths, progress=False)
    assert st_t == ["detected"] * 2 and stats_t.cache_hits == 0
    ref = AlignedCropCache(tmp_path, 112, "central", lambda: mtcnn_detector,
                           detector_name="mtcnn")
    crops_m, _, stats_m = ref.align_all(paths, progress=False)
    assert stats_m.cache_hits == 0  # another detector: not served from the TFLite entries
    diff = np.abs(crops_t.astype(int) - crops_m.astype(int))
    assert diff.mean() < 2.0
    assert crop_cache(tmp_path, 112, "central", "tflite").align_all(
        paths, progress=False)[2].cache_hits == 2
    with pytest.raises(ValueError, match="unknown detector"):
        crop_cache(tmp_path, 112, "central", "dlib")
