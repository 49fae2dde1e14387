"""Geometry of the template and the similarity transform, against independent references."""

import cv2
import numpy as np
import pytest

from tfface.core.template import (
    ARCFACE_112,
    alignment_matrix,
    face_template,
    transform_points,
    umeyama_similarity,
)


def similarity_matrix(angle_rad, scale, tx, ty):
    c, s = np.cos(angle_rad) * scale, np.sin(angle_rad) * scale
    return np.array([[c, -s, tx], [s, c, ty]])


@pytest.mark.parametrize("angle,scale,tx,ty", [
    (0.0, 1.0, 0.0, 0.0), (0.3, 2.5, 40.0, -12.0), (-1.2, 0.4, 300.0, 150.0), (np.pi, 1.7, 5, 5),
])
def test_recovers_known_similarity(angle, scale, tx, ty):
    known = similarity_matrix(angle, scale, tx, ty)
    photo_points = ARCFACE_112 @ known[:, :2].T + known[:, 2]
    # photo -> template must be the inverse of the known template -> photo map.
    m = umeyama_similarity(photo_points, ARCFACE_112)
    back = transform_points(m, photo_points)
    np.testing.assert_allclose(back, ARCFACE_112, atol=1e-4)
    inv = cv2.invertAffineTransform(known)
    np.testing.assert_allclose(m, inv, atol=1e-6)


def test_agrees_with_opencv_on_noisy_points():
    rng = np.random.default_rng(0)
    for _ in range(20):
        known = similarity_matrix(rng.uniform(-0.5, 0.5), rng.uniform(0.5, 3), *rng.uniform(0, 200, 2))
        pts = ARCFACE_112 @ known[:, :2].T + known[:, 2] + rng.normal(0, 1.5, (5, 2))
        ours = umeyama_similarity(pts, ARCFACE_112)
        # OpenCV's least-squares fit (no RANSAC) of the same 4-DoF model.
        ref, _ = cv2.estimateAffinePartial2D(pts.astype(np.float32), ARCFACE_112.astype(np.float32),
                                             method=cv2.LMEDS)
        # LMEDS picks an inlier subset; compare the residual quality instead of raw matrices
        # and also against an independent normal-equation solve.
        a = np.zeros((10, 4))
        b = ARCFACE_112.reshape(-1)
        a[0::2] = np.c_[pts[:, 0], -pts[:, 1], np.ones(5), np.zeros(5)]
        a[1::2] = np.c_[pts[:, 1], pts[:, 0], np.zeros(5), np.ones(5)]
        p, *_ = np.linalg.lstsq(a, b, rcond=None)
        lsq = np.array([[p[0], -p[1], p[2]], [p[1], p[0], p[3]]])
        np.testing.assert_allclose(ours, lsq, atol=1e-6)
        res_ours = np.abs(transform_points(ours, pts) - ARCFACE_112).mean()
        res_cv = np.abs(transform_points(ref, pts) - ARCFACE_112).mean()
        assert res_ours <= res_cv + 1e-6


def test_template_other_sizes():
    np.testing.assert_allclose(face_template(112), ARCFACE_112)
    np.testing.assert_allclose(face_template(160), ARCFACE_112 * 160 / 112)
    narrow = face_template((112, 96))
    np.testing.assert_allclose(narrow[:, 0], ARCFACE_112[:, 0] - 8.0)
    np.testing.assert_allclose(narrow[:, 1], ARCFACE_112[:, 1])


def test_alignment_matrix_maps_landmarks_to_template_of_size():
    m_known = similarity_matrix(0.2, 1.9, 30, 60)
    lm = ARCFACE_112 @ m_known[:, :2].T + m_known[:, 2]
    m = alignment_matrix(lm, 160)
    np.testing.assert_allclose(transform_points(m, lm), ARCFACE_112 * 160 / 112, atol=1e-4)


@pytest.mark.parametrize("bad", [np.zeros((4, 2)), np.full((5, 2), np.nan), np.ones((5, 2))])
def test_bad_landmarks_raise(bad):
    with pytest.raises(ValueError):
        alignment_matrix(bad)
