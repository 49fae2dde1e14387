"""MTCNN face detection on TFLite, without TensorFlow.

The P-, R- and O-nets are the mtcnn package's, converted once by
``python -m tfface.export.mtcnn_tflite`` into ``saved_models/mtcnn``; the cascade around them
(pyramid, proposals, NMS, regression, landmarks) runs in numpy and OpenCV, step for step as
the package's ``StagePNet``, ``StageRNet`` and ``StageONet``.
"""

import os
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np

from tfface.core.detection import FaceDetector
from tfface.errors import ModelError
from tflite import nms as boxmath
from tflite.interpreter import TFLiteModel

NET_FILES = ("pnet.tflite", "rnet.tflite", "onet.tflite")
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "saved_models" / "mtcnn"
RNET_SIZE = 24
ONET_SIZE = 48
# Interpreters kept per input shape (pyramid levels, patch-batch buckets): re-allocating one
# interpreter for every new shape costs more than PNet's inference on a 640x480 pyramid. Each
# keeps activation memory in proportion to its input, so the cache is bounded by the input
# values it holds (1M: a whole 640x480 RGB pyramid, or the upper levels of a larger one).
SHAPE_CACHE_VALUES = 1_000_000


class ShapeCachedModel:
    """One :class:`TFLiteModel` per input shape, least recently used dropped first.

    A TFLite interpreter re-plans its memory (and XNNPACK its kernels) whenever an input is
    resized; MTCNN feeds PNet a different shape per pyramid level, so one interpreter per
    shape makes repeated images of one size (a camera stream) skip that work.

    Args:
        path: the .tflite file.
        num_threads: interpreter CPU threads.
        max_values: bound on the summed input sizes (values) of the kept interpreters; the
            one just used is always kept.
    """

    def __init__(self, path, num_threads=None, max_values=SHAPE_CACHE_VALUES):
        self.path = Path(path)
        self.num_threads = num_threads
        self.max_values = int(max_values)
        self._spare = TFLiteModel(self.path, num_threads=num_threads)
        self.input_name = self._spare.input_names[0]
        self._models = OrderedDict()

    def __call__(self, value):
        """Run on one input array; returns the output dict of :meth:`TFLiteModel.__call__`."""
        key = tuple(value.shape)
        model = self._models.pop(key, None)
        if model is None:
            if self._spare is not None:  # the interpreter made at load time
                model, self._spare = self._spare, None
            else:
                model = TFLiteModel(self.path, num_threads=self.num_threads)
        self._models[key] = model
        while len(self._models) > 1 and \
                sum(int(np.prod(k)) for k in self._models) > self.max_values:
            self._models.popitem(last=False)
        return model(**{self.input_name: value})


def run_batched(model, patches):
    """Run R/O-net on (N, S, S, 3) patches padded to a power-of-two batch (so few distinct
    shapes reach the interpreters); rows are independent, the padding is dropped."""
    n = len(patches)
    bucket = 1 << max(0, int(np.ceil(np.log2(n))))
    if bucket != n:
        pad = np.zeros((bucket - n,) + patches.shape[1:], patches.dtype)
        patches = np.concatenate([patches, pad])
    return {name: value[:n] for name, value in model(patches).items()}


def normalize_mtcnn(rgb):
    """uint8 RGB (H, W, 3) -> float32 ``(x - 127.5) / 128``, MTCNN's input scaling."""
    return (rgb.astype(np.float32) - 127.5) / 128.0


class TFLiteMTCNNDetector(FaceDetector):
    """MTCNN (Zhang et al., "Joint Face Detection and Alignment using Multi-task Cascaded
    Convolutional Networks", 2016) on the TFLite interpreter.

    Args:
        model_dir: folder holding pnet.tflite, rnet.tflite and onet.tflite (default: the
            environment variable ``TFFACE_MTCNN_DIR`` if set, else the repository's
            ``saved_models/mtcnn``).
        num_threads: interpreter CPU threads for each net; None lets the runtime choose.
        steps_threshold: P-, R- and O-net face-probability thresholds (package defaults).
        scale_factor: ratio between pyramid levels.
        nms_thresholds: overlap thresholds of the per-scale PNet NMS, the cross-scale PNet NMS,
            the RNet NMS (all intersection over union) and the ONet NMS (over the smaller box).
        **kwargs: :class:`tfface.core.detection.FaceDetector` options (min_score,
            min_face_size, max_side, pad_ratio).

    Raises:
        ModelError: a net file is missing or not loadable, or no interpreter is installed.
    """

    def __init__(self, model_dir=None, num_threads=None, steps_threshold=(0.6, 0.7, 0.8),
                 scale_factor=0.709, nms_thresholds=(0.5, 0.7, 0.7, 0.7), **kwargs):
        super().__init__(**kwargs)
        if not 0.0 < scale_factor < 1.0:
            raise ValueError(f"scale_factor must be in (0, 1); received {scale_factor}")
        if len(steps_threshold) != 3 or len(nms_thresholds) != 4:
            raise ValueError("steps_threshold needs 3 values and nms_thresholds 4; received "
                             f"{tuple(steps_threshold)} and {tuple(nms_thresholds)}")
        if model_dir is None:
            model_dir = os.environ.get("TFFACE_MTCNN_DIR") or DEFAULT_MODEL_DIR
        self.model_dir = Path(model_dir)
        missing = [name for name in NET_FILES if not (self.model_dir / name).is_file()]
        if missing:
            raise ModelError(
                f"MTCNN TFLite nets missing in {self.model_dir}: {', '.join(missing)}; create "
                f"them with: python -m tfface.export.mtcnn_tflite --out {self.model_dir}")
        self.num_threads = num_threads
        self.steps_threshold = tuple(float(t) for t in steps_threshold)
        self.scale_factor = float(scale_factor)
        self.nms_thresholds = tuple(float(t) for t in nms_thresholds)
        self.pnet, self.rnet, self.onet = (
            ShapeCachedModel(self.model_dir / name, num_threads=num_threads)
            for name in NET_FILES)

    def detect_raw(self, rgb, min_face_size):
        """Run the cascade on one image.

        Args:
            rgb: uint8 RGB (H, W, 3).
            min_face_size: smallest face to search for, in pixels of ``rgb``.

        Returns:
            boxes float64 (N, 4) x1, y1, x2, y2 (clipped to the image), scores (N,),
            landmarks (N, 5, 2) (x, y) left eye, right eye, nose, left and right mouth corner.
        """
        rgb = np.ascontiguousarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"detect_raw needs uint8 RGB (H, W, 3); received "
                             f"{rgb.dtype} {rgb.shape}")
        height, width = rgb.shape[:2]
        image = normalize_mtcnn(rgb)
        # The other backend rounds too: a fractional minimum face size means nothing.
        min_face_size = max(1, int(np.rint(min_face_size)))

        boxes, scores = self._stage_pnet(image, min_face_size)
        if len(boxes):
            boxes, scores = self._stage_rnet(image, boxes)
        if not len(boxes):
            return np.empty((0, 4)), np.empty((0,)), np.empty((0, 5, 2))
        boxes, scores, landmarks = self._stage_onet(image, boxes)
        # As the package with fit_to_image=True: boxes clipped to the image, landmarks not.
        boxes = np.clip(boxes, 0, [width - 1, height - 1, width - 1, height - 1])
        return boxes, scores, landmarks

    # --- stages -------------------------------------------------------------------------------
    def _stage_pnet(self, image, min_face_size):
        height, width = image.shape[:2]
        nms_scale, nms_all = self.nms_thresholds[:2]
        all_boxes, all_scores = [], []
        # 1. Pyramid: PNet slides a 12-pixel window at stride 2 over every level.
        for scale in boxmath.pyramid_scales(height, width, min_face_size, self.scale_factor):
            h, w = boxmath.scaled_size(height, width, scale)
            level = cv2.resize(image, (int(w), int(h)), interpolation=cv2.INTER_AREA)
            out = self.pnet(level[None])
            # 2. Proposals above the PNet threshold, regressed, in original pixels.
            boxes, scores = boxmath.pnet_boxes(out["bbox_reg"][0], out["prob"][0],
                                               self.steps_threshold[0], scale)
            # 3. NMS within the level (proposals come sorted best first).
            keep = boxmath.nms(boxes, nms_scale, "union")
            all_boxes.append(boxes[keep])
            all_scores.append(scores[keep])
        if not all_boxes:
            return np.empty((0, 4)), np.empty((0,))
        boxes = np.concatenate(all_boxes)
        scores = np.concatenate(all_scores)
        # 4. NMS across levels, then square boxes for RNet.
        order = boxmath.sort_desc(scores)
        boxes, scores = boxes[order], scores[order]
        keep = boxmath.nms(boxes, nms_all, "union")
        return boxmath.square(boxes[keep]), scores[keep]

    def _stage_rnet(self, image, boxes):
        # 1. 24x24 patches of the PNet squares; 2. RNet scores and offsets.
        out = run_batched(self.rnet, boxmath.crop_and_resize(image, boxes, RNET_SIZE))
        scores = out["prob"][:, 1].astype(np.float64)
        boxes = boxmath.regress(boxes, out["bbox_reg"])
        # 3. Threshold, NMS, square for ONet.
        mask = scores > self.steps_threshold[1]
        boxes, scores = boxes[mask], scores[mask]
        order = boxmath.sort_desc(scores)
        boxes, scores = boxes[order], scores[order]
        keep = boxmath.nms(boxes, self.nms_thresholds[2], "union")
        return boxmath.square(boxes[keep]), scores[keep]

    def _stage_onet(self, image, boxes):
        # 1. 48x48 patches; 2. ONet scores, offsets and landmarks (relative to the squares).
        out = run_batched(self.onet, boxmath.crop_and_resize(image, boxes, ONET_SIZE))
        landmarks = boxmath.landmarks_to_image(out["landmarks"], boxes)
        scores = out["prob"][:, 1].astype(np.float64)
        boxes = boxmath.regress(boxes, out["bbox_reg"])
        # 3. Threshold, then NMS over the smaller box (drops boxes nested in a better one).
        mask = scores > self.steps_threshold[2]
        boxes, scores, landmarks = boxes[mask], scores[mask], landmarks[mask]
        order = boxmath.sort_desc(scores)
        boxes, scores, landmarks = boxes[order], scores[order], landmarks[order]
        keep = boxmath.nms(boxes, self.nms_thresholds[3], "min")
        return boxes[keep], scores[keep], landmarks[keep]
