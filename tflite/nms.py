"""Box maths of the MTCNN cascade in numpy: pyramid scales, PNet proposals, NMS, regression,
squaring and patch sampling.

Each function reproduces the mtcnn package 1.0 step of the same job (``mtcnn/utils/bboxes.py``,
``mtcnn/utils/images.py``) so that :class:`tflite.mtcnn.TFLiteMTCNNDetector` finds the same
faces without TensorFlow. Boxes are float64 (N, 4) ``x1, y1, x2, y2`` in pixels.
"""

import numpy as np

PNET_STRIDE = 2
PNET_CELL = 12
NMS_METHODS = ("union", "min")


def pyramid_scales(height, width, min_face_size, scale_factor=0.709, min_size=PNET_CELL):
    """Scales of the image pyramid: the first maps ``min_face_size`` to PNet's 12-pixel cell,
    each next one is ``scale_factor`` times smaller.

    The count follows the mtcnn package (from the image's shorter side); levels whose
    resized image would be smaller than PNet's 12x12 input are dropped (the package fails on
    them and then reports no face at all).

    Returns:
        float64 (S,) scales, largest first.
    """
    min_dim = min(height, width)
    count = int(np.round(-((np.log(min_dim / min_size) / np.log(scale_factor)) + 1)))
    scales = (min_size / float(min_face_size)) * scale_factor ** np.arange(max(count, 0))
    sizes = scaled_size(height, width, scales[:, None])
    return scales[(sizes >= min_size).all(axis=-1)]


def scaled_size(height, width, scale):
    """Pixel size (height, width) of an image resized by ``scale``; truncated like the
    package's ``tf.image.resize(images, shape * scale)``."""
    return (np.asarray([height, width]) * scale).astype(np.int64)


def pnet_boxes(bbox_reg, prob, threshold, scale):
    """Face proposals from one PNet output map, in original-image pixels.

    Args:
        bbox_reg: float (h, w, 4) box regression (dx1, dy1, dx2, dy2) per cell.
        prob: float (h, w, 2) softmax, channel 1 = face.
        threshold: keep cells whose face probability is above this.
        scale: the pyramid scale the map was computed at.

    Returns:
        boxes float64 (N, 4) already regressed, scores float64 (N,), best first.
    """
    score = prob[..., 1]
    ys, xs = np.where(score > threshold)
    reg = bbox_reg[ys, xs].astype(np.float64)
    # Cell (y, x) covers [stride*x + 1, stride*x + cell] (the package's 1-based convention).
    x1 = PNET_STRIDE * xs + 1.0
    y1 = PNET_STRIDE * ys + 1.0
    x2 = PNET_STRIDE * xs + float(PNET_CELL)
    y2 = PNET_STRIDE * ys + float(PNET_CELL)
    side = PNET_CELL - 1.0
    boxes = np.stack([x1 + reg[:, 0] * side, y1 + reg[:, 1] * side,
                      x2 + reg[:, 2] * side, y2 + reg[:, 3] * side], axis=-1)
    scores = score[ys, xs].astype(np.float64)
    order = sort_desc(scores)
    return boxes[order] / scale, scores[order]


def sort_desc(scores):
    """Indices sorting ``scores`` best first (as the package: argsort reversed)."""
    return np.argsort(scores)[::-1]


def overlap(boxes_a, boxes_b, method="union"):
    """Pairwise overlap (M, N): intersection over union, or over the smaller area ("min")."""
    if method not in NMS_METHODS:
        raise ValueError(f"unknown overlap method {method!r}; choose from {list(NMS_METHODS)}")
    area_a = (boxes_a[:, 2] - boxes_a[:, 0]) * (boxes_a[:, 3] - boxes_a[:, 1])
    area_b = (boxes_b[:, 2] - boxes_b[:, 0]) * (boxes_b[:, 3] - boxes_b[:, 1])
    iw = np.minimum(boxes_a[:, None, 2], boxes_b[None, :, 2]) - \
        np.maximum(boxes_a[:, None, 0], boxes_b[None, :, 0])
    ih = np.minimum(boxes_a[:, None, 3], boxes_b[None, :, 3]) - \
        np.maximum(boxes_a[:, None, 1], boxes_b[None, :, 1])
    inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
    if method == "union":
        denom = area_a[:, None] + area_b[None, :] - inter
    else:
        denom = np.minimum(area_a[:, None], area_b[None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / denom


def nms(boxes, threshold, method="union", chunk=1024):
    """Indices of the boxes kept by MTCNN's suppression, for boxes already sorted best first.

    As in the mtcnn package, a box is dropped when any better box overlaps it by more than
    ``threshold``, even one that is itself dropped (stricter than greedy NMS). Computed in
    chunks so thousands of PNet proposals need no N x N matrix at once.

    Returns:
        int64 (K,) indices into ``boxes``, ascending.
    """
    n = len(boxes)
    keep = np.ones(n, dtype=bool)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        ov = overlap(boxes[:stop], boxes[start:stop], method)  # (better i, candidate j)
        better = np.arange(stop)[:, None] < np.arange(start, stop)[None, :]
        keep[start:stop] = ~((ov > threshold) & better).any(axis=0)
    return np.flatnonzero(keep)


def square(boxes):
    """Grow each box to a square on its longer side, keeping its centre."""
    boxes = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    boxes[:, 0] += w * 0.5 - side * 0.5
    boxes[:, 1] += h * 0.5 - side * 0.5
    boxes[:, 2] = boxes[:, 0] + side
    boxes[:, 3] = boxes[:, 1] + side
    return boxes


def regress(boxes, offsets):
    """Apply R/O-net offsets (N, 4), in units of the box size ``x2 - x1 + 1``."""
    w = boxes[:, 2] - boxes[:, 0] + 1.0
    h = boxes[:, 3] - boxes[:, 1] + 1.0
    return boxes + offsets.astype(np.float64) * np.stack([w, h, w, h], axis=-1)


def landmarks_to_image(landmarks, boxes):
    """O-net landmarks (N, 10) x1..x5, y1..y5 relative to the box -> (N, 5, 2) pixels."""
    w = boxes[:, 2:3] - boxes[:, 0:1] + 1.0
    h = boxes[:, 3:4] - boxes[:, 1:2] + 1.0
    lm = landmarks.astype(np.float64)
    xs = w * lm[:, 0:5] + boxes[:, 0:1] - 1.0
    ys = h * lm[:, 5:10] + boxes[:, 1:2] - 1.0
    return np.stack([xs, ys], axis=-1)


def crop_and_resize(image, boxes, size):
    """Bilinear patches of boxes, sampled like ``tf.image.crop_and_resize``.

    The package passes ``box / (H, W)`` as normalised coordinates, which TensorFlow maps back
    with ``(H - 1)``; samples outside the image are 0 (mid-grey after normalisation).

    Args:
        image: float32 (H, W, C) normalised image.
        boxes: float (N, 4) x1, y1, x2, y2 pixels.
        size: output side (24 for RNet, 48 for ONet).

    Returns:
        float32 (N, size, size, C).
    """
    height, width = image.shape[:2]
    steps = np.arange(size, dtype=np.float64) / (size - 1)
    y1 = boxes[:, 1:2] / height * (height - 1)
    y2 = boxes[:, 3:4] / height * (height - 1)
    x1 = boxes[:, 0:1] / width * (width - 1)
    x2 = boxes[:, 2:3] / width * (width - 1)
    ys = y1 + steps[None, :] * (y2 - y1)  # (N, size)
    xs = x1 + steps[None, :] * (x2 - x1)
    valid = ((ys >= 0) & (ys <= height - 1))[:, :, None] & ((xs >= 0) & (xs <= width - 1))[:, None]
    y0 = np.clip(np.floor(ys), 0, height - 1).astype(np.int64)
    y1i = np.clip(np.ceil(ys), 0, height - 1).astype(np.int64)
    x0 = np.clip(np.floor(xs), 0, width - 1).astype(np.int64)
    x1i = np.clip(np.ceil(xs), 0, width - 1).astype(np.int64)
    wy = (ys - np.floor(ys)).astype(np.float32)[:, :, None, None]
    wx = (xs - np.floor(xs)).astype(np.float32)[:, None, :, None]
    top_left = image[y0[:, :, None], x0[:, None, :]]
    top_right = image[y0[:, :, None], x1i[:, None, :]]
    bottom_left = image[y1i[:, :, None], x0[:, None, :]]
    bottom_right = image[y1i[:, :, None], x1i[:, None, :]]
    top = top_left + (top_right - top_left) * wx
    bottom = bottom_left + (bottom_right - bottom_left) * wx
    out = top + (bottom - top) * wy
    return np.where(valid[..., None], out, 0.0).astype(np.float32)
