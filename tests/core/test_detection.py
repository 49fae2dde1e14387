"""MTCNN detection and alignment on real photos (the committed samples)."""

import cv2
import numpy as np
import pytest

from tests.conftest import ROOT
from tfface.core.align import FaceAligner, warp_face
from tfface.core.image import load_image
from tfface.core.template import ARCFACE_112, alignment_matrix, transform_points
from tfface.errors import NoFaceError

SAMPLES = sorted((ROOT / "samples").glob("*.jpg"))


def test_samples_present():
    assert len(SAMPLES) == 4


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_sensible_box_and_landmarks(mtcnn_detector, path):
    rgb = load_image(path)
    faces = mtcnn_detector.detect(rgb)
    assert len(faces) == 1
    f = faces[0]
    assert f.score > 0.95
    x1, y1, x2, y2 = f.box
    assert 0 <= x1 < x2 <= rgb.shape[1] and 0 <= y1 < y2 <= rgb.shape[0]
    assert f.size > 60  # these crops show the face large
    le, re, nose, ml, mr = f.landmarks
    assert le[0] < re[0] and ml[0] < mr[0]  # left/right as seen in the image
    assert max(le[1], re[1]) < nose[1] < min(ml[1], mr[1])  # eyes above nose above mouth
    assert np.all((f.landmarks[:, 0] > x1) & (f.landmarks[:, 0] < x2))
    assert np.all((f.landmarks[:, 1] > y1) & (f.landmarks[:, 1] < y2))
    d = f.to_dict()
    assert isinstance(d["score"], float) and set(d["landmarks"]) == {
        "left_eye", "right_eye", "nose", "mouth_left", "mouth_right"}


def test_redetect_on_aligned_crop_lands_on_template(mtcnn_detector):
    aligner = FaceAligner(mtcnn_detector, size=112)
    for path in SAMPLES:
        crop = aligner.align_one(path)
        assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
        again = mtcnn_detector.detect_one(crop)
        # Where the photo's own landmarks were sent (a similarity cannot fit 5 points of a
        # real face exactly; the residual of the fit is the person's face shape).
        face = mtcnn_detector.detect_one(path)
        sent = transform_points(alignment_matrix(face.landmarks, 112), face.landmarks)
        assert np.linalg.norm(again.landmarks - sent, axis=1).max() < 4.0, path.name
        err = np.linalg.norm(again.landmarks - ARCFACE_112, axis=1)
        assert err.mean() < 5.0 and err.max() < 10.0, (path.name, err)


def test_crop_160_frames_face_like_112(mtcnn_detector):
    rgb = load_image(SAMPLES[0])
    f = mtcnn_detector.detect_one(rgb)
    small = warp_face(rgb, f.landmarks, 112)
    big = warp_face(rgb, f.landmarks, 160)
    resized = cv2.resize(big, (112, 112), interpolation=cv2.INTER_AREA)
    assert np.abs(resized.astype(int) - small.astype(int)).mean() < 6


def side_by_side(big_path, small_path, small_side=110, big_left=True):
    big = load_image(big_path)
    small = cv2.resize(load_image(small_path), (small_side, small_side))
    canvas = np.full((300, 900, 3), 128, np.uint8)
    if big_left:
        canvas[25:275, 0:250] = big
        canvas[95:95 + small_side, 395:395 + small_side] = small  # at the centre
    return canvas


def test_policies_largest_central_all(mtcnn_detector):
    canvas = side_by_side(SAMPLES[0], SAMPLES[2])
    all_faces = mtcnn_detector.detect(canvas, policy="all")
    assert len(all_faces) == 2
    largest = mtcnn_detector.detect(canvas, policy="largest")[0]
    central = mtcnn_detector.detect(canvas, policy="central")[0]
    assert largest.center[0] < 250  # the big face is on the left
    assert 395 < central.center[0] < 505  # the small face sits at the centre
    assert largest.area > central.area


def test_large_image_downscaled_and_mapped_back(mtcnn_detector):
    from tfface.detect import MTCNNDetector

    rgb = load_image(SAMPLES[1])
    ref = mtcnn_detector.detect_one(rgb)
    huge = cv2.resize(rgb, (2000, 2000), interpolation=cv2.INTER_CUBIC)
    det = MTCNNDetector(max_side=400)
    det._mtcnn = mtcnn_detector._mtcnn  # share the loaded weights
    got = det.detect_one(huge)
    scale = 2000 / 250
    np.testing.assert_allclose(got.landmarks, ref.landmarks * scale, atol=4 * scale)


def test_tight_crop_found_by_padding(mtcnn_detector):
    rgb = load_image(SAMPLES[3])
    f = mtcnn_detector.detect_one(rgb)
    x1, y1, x2, y2 = (int(round(v)) for v in f.box)
    tight = rgb[y1 + 5:y2 - 5, x1 + 5:x2 - 5]
    got = mtcnn_detector.detect_one(tight)
    expected = f.landmarks - [x1 + 5, y1 + 5]
    assert np.linalg.norm(got.landmarks - expected, axis=1).max() < 8


def test_no_face_and_filters(mtcnn_detector):
    blank = np.full((200, 200, 3), 90, np.uint8)
    assert mtcnn_detector.detect(blank) == []
    with pytest.raises(NoFaceError, match="no face"):
        mtcnn_detector.detect_one(blank)
    with pytest.raises(NoFaceError):
        FaceAligner(mtcnn_detector).align(blank)
    from tfface.detect import MTCNNDetector

    strict = MTCNNDetector(min_face_size=240, pad_ratio=0)
    strict._mtcnn = mtcnn_detector._mtcnn
    assert strict.detect(SAMPLES[0]) == []
