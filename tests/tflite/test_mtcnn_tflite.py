"""tflite.mtcnn: the TFLite MTCNN cascade against the mtcnn package, known geometry, and
tflite.nms against direct reimplementations of the package's and TensorFlow's rules."""

from pathlib import Path

import numpy as np
import pytest

from tfface.core.image import load_image
from tfface.errors import ModelError
from tflite import nms as boxmath
from tflite.mtcnn import TFLiteMTCNNDetector

FIXTURE_PHOTOS = ("celeba_7201_001085.jpg", "celeba_7202_006155.jpg")
# The nets are the package's weights; only float rounding separates the two cascades.
MAX_DEVIATION_PX = 1.0


@pytest.fixture(scope="module")
def tflite_detector():
    return TFLiteMTCNNDetector(num_threads=1)


def _photos(fixtures_dir):
    return [load_image(fixtures_dir / name) for name in FIXTURE_PHOTOS]


def _assert_same_faces(ours, theirs):
    assert len(ours) == len(theirs)
    ours = sorted(ours, key=lambda f: f.box[0])
    theirs = sorted(theirs, key=lambda f: f.box[0])
    box_dev = max(np.abs(a.box - b.box).max() for a, b in zip(ours, theirs))
    lm_dev = max(np.abs(a.landmarks - b.landmarks).max() for a, b in zip(ours, theirs))
    assert box_dev < MAX_DEVIATION_PX, f"box deviation {box_dev:.3f} px"
    assert lm_dev < MAX_DEVIATION_PX, f"landmark deviation {lm_dev:.3f} px"
    for a, b in zip(ours, theirs):
        assert abs(a.score - b.score) < 1e-3


def _assert_face_geometry(face):
    """Eyes above the nose above the mouth, left before right, all inside the box."""
    (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = face.landmarks
    assert lx < nx < rx and mlx < mrx
    assert max(ly, ry) < ny < min(mly, mry)
    x1, y1, x2, y2 = face.box
    assert (face.landmarks[:, 0] > x1).all() and (face.landmarks[:, 0] < x2).all()
    assert (face.landmarks[:, 1] > y1).all() and (face.landmarks[:, 1] < y2).all()


# --- agreement with the mtcnn package ----------------------------------------------------------
def test_fixture_photos_match_package(tflite_detector, mtcnn_detector, fixtures_dir):
    for rgb in _photos(fixtures_dir):
        ours = tflite_detector.detect(rgb)
        assert len(ours) == 1
        _assert_face_geometry(ours[0])
        _assert_same_faces(ours, mtcnn_detector.detect(rgb))


def test_real_photos_match_package(tflite_detector, mtcnn_detector, shared_data):
    paths = (sorted(shared_data.glob("celeba/*/*.jpg"))[10:14]
             + sorted(shared_data.glob("lfw/images/*/*.jpg"))[:3]
             + sorted(shared_data.glob("utkface/*.jpg"))[:3])
    assert len(paths) == 10
    found = 0
    for path in paths:
        ours = tflite_detector.detect(path)
        _assert_same_faces(ours, mtcnn_detector.detect(path))
        found += len(ours)
    assert found >= 9


def test_two_faces_side_by_side(tflite_detector, mtcnn_detector, fixtures_dir):
    left, right = _photos(fixtures_dir)
    tiled = np.concatenate([left, right], axis=1)
    faces = tflite_detector.detect(tiled)
    assert len(faces) == 2
    centres = sorted(f.center[0] for f in faces)
    assert centres[0] < left.shape[1] < centres[1]
    _assert_same_faces(faces, mtcnn_detector.detect(tiled))
    # The face found in a single photo is found at the same place inside the tiled image.
    alone = tflite_detector.detect_one(right)
    shifted = min(faces, key=lambda f: abs(f.center[0] - alone.center[0] - left.shape[1]))
    np.testing.assert_allclose(shifted.landmarks - [left.shape[1], 0], alone.landmarks, atol=3)


@pytest.mark.parametrize("kind", ["black", "grey", "noise"])
def test_no_face(tflite_detector, kind):
    rng = np.random.default_rng(0)
    image = {
        "black": np.zeros((240, 320, 3), np.uint8),
        "grey": np.full((240, 320, 3), 128, np.uint8),
        "noise": rng.integers(0, 256, (240, 320, 3), dtype=np.uint8),
    }[kind]
    assert tflite_detector.detect(image) == []
    boxes, scores, landmarks = tflite_detector.detect_raw(image, 20)
    assert boxes.shape == (0, 4) and scores.shape == (0,) and landmarks.shape == (0, 5, 2)


def test_image_smaller_than_pnet_window(tflite_detector):
    assert tflite_detector.detect(np.zeros((8, 8, 3), np.uint8)) == []


def test_min_face_size_above_image_size(tflite_detector, fixtures_dir):
    """A minimum face larger than the package's pyramid allows leaves no level; no error."""
    rgb = _photos(fixtures_dir)[0]
    boxes, _, _ = tflite_detector.detect_raw(rgb, 400)
    assert boxes.shape == (0, 4)


def test_thread_counts_agree(fixtures_dir, tflite_detector):
    rgb = _photos(fixtures_dir)[1]
    two = TFLiteMTCNNDetector(num_threads=2).detect_one(rgb)
    np.testing.assert_allclose(two.landmarks, tflite_detector.detect_one(rgb).landmarks,
                               atol=1e-3)


def test_repeated_calls_are_stable(tflite_detector, fixtures_dir):
    """Interpreters cached per shape give the same answer on the second call."""
    rgb = _photos(fixtures_dir)[0]
    first = tflite_detector.detect_raw(rgb, 20)
    second = tflite_detector.detect_raw(rgb, 20)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_shape_cache_is_bounded_and_exact():
    from tflite.interpreter import TFLiteModel
    from tflite.mtcnn import DEFAULT_MODEL_DIR, ShapeCachedModel

    cached = ShapeCachedModel(DEFAULT_MODEL_DIR / "pnet.tflite", max_values=3 * 40 * 40)
    fresh = TFLiteModel(DEFAULT_MODEL_DIR / "pnet.tflite")
    rng = np.random.default_rng(8)
    for side in (20, 30, 40, 20, 50, 30):
        x = rng.uniform(-1, 1, (1, side, side, 3)).astype(np.float32)
        np.testing.assert_allclose(cached(x)["prob"], fresh(image=x)["prob"], atol=1e-6)
        kept = list(cached._models)
        assert kept[-1] == x.shape
        assert len(kept) == 1 or sum(np.prod(k) for k in kept) <= 3 * 40 * 40


def test_missing_model_dir(tmp_path):
    with pytest.raises(ModelError) as err:
        TFLiteMTCNNDetector(model_dir=tmp_path)
    message = str(err.value)
    assert "\n" not in message and "tfface.export.mtcnn_tflite" in message


def test_model_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TFFACE_MTCNN_DIR", str(tmp_path))
    with pytest.raises(ModelError, match=str(tmp_path)):
        TFLiteMTCNNDetector()


def test_bad_arguments():
    with pytest.raises(ValueError, match="scale_factor"):
        TFLiteMTCNNDetector(scale_factor=1.2)
    with pytest.raises(ValueError, match="steps_threshold"):
        TFLiteMTCNNDetector(steps_threshold=(0.6, 0.7))


# --- box maths ---------------------------------------------------------------------------------
def test_pyramid_scales():
    scales = boxmath.pyramid_scales(250, 250, 20)
    assert scales[0] == pytest.approx(12 / 20)
    np.testing.assert_allclose(scales[1:] / scales[:-1], 0.709)
    # 250 * 0.6 * 0.709**k >= 12 for k <= 7: eight levels, the last holds a 12x12 window.
    assert len(scales) == 8 and int(250 * scales[-1]) >= 12 > int(250 * scales[-1] * 0.709)
    # For 40 px faces the package counts 8 levels too, but 250 * 0.3 * 0.709**6 < 12.
    big = boxmath.pyramid_scales(250, 250, 40)
    assert len(big) == 6 and big[0] == pytest.approx(0.3)
    assert len(boxmath.pyramid_scales(10, 300, 20)) == 0


def _package_nms(boxes, threshold, method):
    """The mtcnn package's rule, as loops: drop j if any better i overlaps it > threshold."""
    keep = []
    for j in range(len(boxes)):
        drop = False
        for i in range(j):
            ax1, ay1, ax2, ay2 = boxes[i]
            bx1, by1, bx2, by2 = boxes[j]
            inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
            area_a, area_b = (ax2 - ax1) * (ay2 - ay1), (bx2 - bx1) * (by2 - by1)
            denom = area_a + area_b - inter if method == "union" else min(area_a, area_b)
            if inter / denom > threshold:
                drop = True
        if not drop:
            keep.append(j)
    return keep


@pytest.mark.parametrize("method", ["union", "min"])
def test_nms_matches_package_rule(method):
    rng = np.random.default_rng(5)
    xy = rng.uniform(0, 60, (80, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 30, (80, 2))], axis=1)
    expect = _package_nms(boxes, 0.4, method)
    np.testing.assert_array_equal(boxmath.nms(boxes, 0.4, method), expect)
    np.testing.assert_array_equal(boxmath.nms(boxes, 0.4, method, chunk=7), expect)


def test_nms_known_geometry():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30], [2, 2, 6, 6.0]])
    np.testing.assert_array_equal(boxmath.nms(boxes, 0.5, "union"), [0, 2, 3])
    np.testing.assert_array_equal(boxmath.nms(boxes, 0.5, "min"), [0, 2])  # nested box
    assert boxmath.nms(np.empty((0, 4)), 0.5).shape == (0,)


def test_square_and_regress():
    sq = boxmath.square(np.array([[10.0, 20.0, 30.0, 60.0]]))
    np.testing.assert_allclose(sq, [[0.0, 20.0, 40.0, 60.0]])
    moved = boxmath.regress(np.array([[0.0, 0.0, 9.0, 19.0]]), np.array([[0.1, -0.1, 0.2, 0.5]]))
    np.testing.assert_allclose(moved, [[1.0, -2.0, 11.0, 29.0]])


def test_crop_and_resize_matches_tensorflow():
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(6)
    image = rng.uniform(-1, 1, (37, 53, 3)).astype(np.float32)
    boxes = np.array([[3.0, 4.0, 30.0, 31.0], [-10.0, -5.0, 20.0, 25.0],
                      [40.0, 20.0, 70.0, 50.0], [10.5, 7.25, 11.5, 8.25]])
    ours = boxmath.crop_and_resize(image, boxes, 24)
    norm = boxes[:, [1, 0, 3, 2]] / np.array([37, 53, 37, 53])
    ref = tf.image.crop_and_resize(image[None], norm.astype(np.float32),
                                   np.zeros(len(boxes), np.int32), (24, 24)).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_default_model_dir_is_in_repo():
    from tflite.mtcnn import DEFAULT_MODEL_DIR

    assert DEFAULT_MODEL_DIR == Path(__file__).resolve().parents[2] / "saved_models" / "mtcnn"


# --- shipped files and the converter -----------------------------------------------------------
def test_model_card_matches_shipped_files():
    import hashlib
    import json

    from tflite.mtcnn import DEFAULT_MODEL_DIR

    card = json.loads((DEFAULT_MODEL_DIR / "model_card.json").read_text())
    assert card["normalisation"] == {"mean": 127.5, "std": 128.0}
    for name, info in card["networks"].items():
        data = (DEFAULT_MODEL_DIR / info["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == info["sha256"], name
        assert len(data) == info["bytes"]


@pytest.mark.parametrize("weights,tolerance,max_ratio", [("float32", 1e-6, 1.01),
                                                         ("float16", 2e-2, 0.55)])
def test_converter_reproduces_rnet(tmp_path, weights, tolerance, max_ratio):
    """Converting again gives the shipped net's outputs (float16: half the size, close)."""
    pytest.importorskip("mtcnn")
    from tfface.export.mtcnn_tflite import convert_net
    from tflite.interpreter import TFLiteModel
    from tflite.mtcnn import DEFAULT_MODEL_DIR

    path = tmp_path / "rnet.tflite"
    path.write_bytes(convert_net("rnet", weights=weights))
    shipped = DEFAULT_MODEL_DIR / "rnet.tflite"
    assert path.stat().st_size <= max_ratio * shipped.stat().st_size
    x = np.random.default_rng(7).uniform(-1, 1, (6, 24, 24, 3)).astype(np.float32)
    new, old = TFLiteModel(path)(x), TFLiteModel(shipped)(x)
    assert set(new) == {"bbox_reg", "prob"}
    for key in new:
        np.testing.assert_allclose(new[key], old[key], atol=tolerance)
