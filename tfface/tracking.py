"""Follow face boxes between detections with sparse optical flow (Lucas-Kanade).

Detecting and embedding every frame is too slow for real time on 2 cores; detecting every k
frames and moving the boxes with the median flow of corner points inside them in between keeps
names on faces at a fraction of the cost.
"""

import cv2
import numpy as np


class BoxTracker:
    """Median-flow tracking of a set of boxes from frame to frame.

    Args:
        max_points: corner points per box.
        min_points: a box whose surviving points fall below this is dropped (lost).
    """

    def __init__(self, max_points=40, min_points=4):
        self.max_points = max_points
        self.min_points = min_points
        self.prev_gray = None
        self.boxes = []  # list of float (4,) xyxy
        self.labels = []  # any payload per box (e.g. a facebank Match)

    def reset(self, gray, boxes, labels):
        """Start tracking ``boxes`` (after a detection) on grayscale frame ``gray``."""
        self.prev_gray = gray
        self.boxes = [np.asarray(b, dtype=np.float64) for b in boxes]
        self.labels = list(labels)

    def update(self, gray):
        """Move the boxes to frame ``gray``; drops boxes that cannot be followed.

        Returns:
            list of (box, label) still tracked.
        """
        if self.prev_gray is None or not self.boxes:
            self.prev_gray = gray
            return []
        kept_boxes, kept_labels = [], []
        h, w = gray.shape[:2]
        for box, label in zip(self.boxes, self.labels):
            moved = self._track_box(self.prev_gray, gray, box)
            if moved is None:
                continue
            moved[[0, 2]] = np.clip(moved[[0, 2]], 0, w)
            moved[[1, 3]] = np.clip(moved[[1, 3]], 0, h)
            if moved[2] - moved[0] < 4 or moved[3] - moved[1] < 4:
                continue
            kept_boxes.append(moved)
            kept_labels.append(label)
        self.boxes, self.labels, self.prev_gray = kept_boxes, kept_labels, gray
        return list(zip(self.boxes, self.labels))

    def _track_box(self, prev, cur, box):
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        x1, y1 = max(0, x1), max(0, y1)
        mask = np.zeros(prev.shape[:2], np.uint8)
        mask[y1:y2, x1:x2] = 255
        pts = cv2.goodFeaturesToTrack(prev, self.max_points, 0.01, 3, mask=mask)
        if pts is None or len(pts) < self.min_points:
            return None
        nxt, status, _ = cv2.calcOpticalFlowPyrLK(prev, cur, pts, None, winSize=(15, 15),
                                                  maxLevel=2)
        ok = status.reshape(-1) == 1
        if ok.sum() < self.min_points:
            return None
        p0, p1 = pts.reshape(-1, 2)[ok], nxt.reshape(-1, 2)[ok]
        shift = np.median(p1 - p0, axis=0)
        # Scale: median ratio of pairwise distances (a face moving towards the camera grows).
        i, j = np.triu_indices(len(p0), k=1)
        d0 = np.linalg.norm(p0[i] - p0[j], axis=1)
        d1 = np.linalg.norm(p1[i] - p1[j], axis=1)
        good = d0 > 1e-3
        scale = float(np.median(d1[good] / d0[good])) if good.any() else 1.0
        scale = float(np.clip(scale, 0.8, 1.25))
        cx, cy = (box[0] + box[2]) / 2 + shift[0], (box[1] + box[3]) / 2 + shift[1]
        bw, bh = (box[2] - box[0]) * scale, (box[3] - box[1]) * scale
        return np.array([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2])
