"""Face detection with the ``mtcnn`` package (TensorFlow; its weights ship in the wheel).

Import is lazy: ``import tfface`` stays TensorFlow-free; creating :class:`MTCNNDetector`
imports mtcnn and TensorFlow.
"""

import numpy as np

from tfface.core.detection import FaceDetector
from tfface.errors import ModelError


class MTCNNDetector(FaceDetector):
    """MTCNN (Zhang et al. 2016) from the mtcnn package, behind the project's detector API.

    Args:
        steps_threshold: P-, R- and O-net thresholds (the package defaults 0.6, 0.7, 0.8).
        device: TensorFlow device string.
        **kwargs: :class:`tfface.core.detection.FaceDetector` options (min_score,
            min_face_size, max_side, pad_ratio).
    """

    def __init__(self, steps_threshold=(0.6, 0.7, 0.8), device="CPU:0", **kwargs):
        super().__init__(**kwargs)
        try:
            from tfface.quiet import import_tensorflow

            import_tensorflow()
            from mtcnn import MTCNN
        except ImportError as err:
            raise ModelError(
                "the mtcnn detector needs the 'detect' extra: pip install 'tfface[detect]'"
            ) from err
        self.steps_threshold = tuple(float(t) for t in steps_threshold)
        self._mtcnn = MTCNN(stages="face_and_landmarks_detection", device=device)

    def detect_raw(self, rgb, min_face_size):
        t_p, t_r, t_o = self.steps_threshold
        out = self._mtcnn.detect_faces(
            np.ascontiguousarray(rgb), box_format="xyxy", output_type="numpy",
            min_face_size=int(round(min_face_size)),
            threshold_pnet=t_p, threshold_rnet=t_r, threshold_onet=t_o)
        out = np.asarray(out, dtype=np.float64).reshape(-1, 16)
        boxes = out[:, 1:5]
        scores = out[:, 5]
        # mtcnn's numpy rows are [img, x1, y1, x2, y2, score, x_1..x_5, y_1..y_5].
        landmarks = np.stack([out[:, 6:11], out[:, 11:16]], axis=-1)
        return boxes, scores, landmarks


def default_detector(**kwargs):
    """The detector used when none is given: MTCNN from the mtcnn package."""
    return MTCNNDetector(**kwargs)
