"""The one face template and the one similarity transform.

ArcFace's 5-point template for 112x112 crops (left eye, right eye, nose tip, left and right
mouth corner, in image coordinates of the person's left/right as seen in the photo). Other crop
sizes use the same template scaled to the crop height and centred horizontally, so a 160x160
FaceNet crop frames the face exactly like a 112x112 ArcFace crop.
"""

import numpy as np

ARCFACE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)
ARCFACE_SIZE = 112
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


def _as_hw(size):
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = (int(v) for v in size)
    return h, w


def face_template(size=112):
    """5x2 template (x, y) for a crop of ``size`` (int, or (height, width)).

    The 112x112 template is scaled by height/112 and shifted to centre it horizontally;
    (112, 96) gives insightface's 96-wide variant (x - 8).
    """
    h, w = _as_hw(size)
    if h <= 0 or w <= 0:
        raise ValueError(f"crop size must be positive; received {size!r}")
    scale = h / ARCFACE_SIZE
    pts = ARCFACE_112 * scale
    pts[:, 0] += (w - ARCFACE_SIZE * scale) / 2.0
    return pts


def umeyama_similarity(src, dst):
    """Least-squares similarity transform (rotation, uniform scale, translation) src -> dst.

    Umeyama (1991), "Least-squares estimation of transformation parameters between two point
    patterns", without reflection.

    Args:
        src, dst: (N, 2) point arrays, N >= 2.
    Returns:
        (2, 3) float64 affine matrix M with ``dst ~= M[:, :2] @ src + M[:, 2]``.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or src.shape[0] < 2:
        raise ValueError(f"need two (N>=2, 2) point sets of equal shape; got {src.shape}, {dst.shape}")
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise ValueError("landmarks contain NaN or infinity")
    n = src.shape[0]
    src_mean = src.mean(axis=0)
    dst_mean = dst.mean(axis=0)
    src_c = src - src_mean
    dst_c = dst - dst_mean
    cov = dst_c.T @ src_c / n
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    rot = u @ np.diag(d) @ vt
    src_var = (src_c**2).sum() / n
    if src_var <= 1e-12:
        raise ValueError("landmarks are degenerate (all at one point)")
    scale = (s * d).sum() / src_var
    m = np.zeros((2, 3), dtype=np.float64)
    m[:, :2] = scale * rot
    m[:, 2] = dst_mean - m[:, :2] @ src_mean
    return m


def alignment_matrix(landmarks, size=112, template=None):
    """Matrix mapping a photo's 5 landmarks onto the template of a ``size`` crop.

    ``template`` (5x2, in pixels of the ``size`` crop) replaces the ArcFace template for models
    trained on another geometry (e.g. dlib's face chips); their model cards carry it.
    """
    lm = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    if lm.shape != (5, 2):
        raise ValueError(f"expected 5 (x, y) landmarks; received shape {np.shape(landmarks)}")
    dst = face_template(size) if template is None else np.asarray(template, np.float64)
    if dst.shape != (5, 2):
        raise ValueError(f"template must be 5 (x, y) points; received shape {dst.shape}")
    return umeyama_similarity(lm, dst)


def transform_points(matrix, points):
    """Apply a (2, 3) affine matrix to (N, 2) points."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return pts @ np.asarray(matrix)[:, :2].T + np.asarray(matrix)[:, 2]
