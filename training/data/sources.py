"""Random-access face sources (folders, insightface .rec, TFRecord shards) and the decoder.

Every source is a sequence of N images with int64 ``labels`` (N,) and ``read(i) -> encoded
bytes``; both pipeline backends index them the same way, so they see the same pixels.

Image size policy (``decode_face``): sources hold aligned crops (``tfface-align SRC DST``
writes 112x112). A square image of another size is resized whole (area interpolation when
shrinking, linear when enlarging), so 224px aligned crops or loose square crops (LFW-style
250x250) load directly. A non-square image is not an aligned crop: it is skipped and counted,
and :func:`check_crops` (run when a pipeline is built) refuses a source whose first images
are not square with a one-line :class:`DataError` telling the user to align first.
"""

import os
import threading
from collections import Counter

import cv2
import numpy as np

from tfface.core.image import load_image
from tfface.errors import DataError, ImageError
from training.data.folders import ImageList, list_image_folder
from training.data.recordio import InsightFaceRecord, RecordError


class SkipCounter:
    """Thread-safe count of images skipped because they could not be read or decoded.

    Attributes:
        count: total skipped.
        examples: up to ``keep`` ``"name: reason"`` strings, for a log line.
    """

    def __init__(self, keep=20):
        self._lock = threading.Lock()
        self._seen = set()
        self.count = 0
        self.keep = keep
        self.examples = []

    def add(self, name, reason):
        with self._lock:
            self.count += 1
            if len(self.examples) < self.keep:
                self.examples.append(f"{name}: {reason}")

    def add_once(self, key, name, reason):
        """Count ``key`` once, however many epochs it is met in."""
        with self._lock:
            if key in self._seen:
                return
            self._seen.add(key)
        self.add(name, reason)

    def __repr__(self):
        return f"SkipCounter(count={self.count})"


def decode_face(data, size=112):
    """Decode one encoded image to an aligned crop.

    Args:
        data: encoded bytes or a file path.
        size: output side in pixels.
    Returns:
        uint8 RGB (size, size, 3).
    Raises:
        ImageError: unreadable image, or not square (not an aligned crop).
    """
    rgb = load_image(data)
    h, w = rgb.shape[:2]
    if (h, w) == (size, size):
        return rgb
    if h != w:
        raise ImageError(f"{h}x{w} is not a square aligned crop")
    interp = cv2.INTER_AREA if h > size else cv2.INTER_LINEAR
    return cv2.resize(rgb, (size, size), interpolation=interp)


class FolderSource:
    """Images in folders (see :mod:`training.data.folders`); ``read`` returns the path."""

    kind = "folder"

    def __init__(self, image_list):
        self.image_list = image_list
        self.labels = image_list.labels
        self.class_names = image_list.class_names
        self.num_classes = image_list.num_classes
        self.description = image_list.root

    def __len__(self):
        return len(self.image_list)

    def name(self, i):
        return self.image_list.paths[i]

    def read(self, i):
        return self.image_list.paths[i]


class RecordSource:
    """An insightface ``train.rec`` folder (see :mod:`training.data.recordio`)."""

    kind = "recordio"

    def __init__(self, root):
        self.record = InsightFaceRecord(root)
        self.labels = self.record.labels
        self.num_classes = self.record.num_classes
        self.class_names = [str(c) for c in range(self.num_classes)]
        self.description = os.fspath(root)

    def __len__(self):
        return len(self.record)

    def name(self, i):
        return f"{self.record.file.rec_path}#{int(self.record.keys[i])}"

    def read(self, i):
        return self.record.read(i)[0]


def open_source(spec, min_images=1, max_identities=None):
    """Open a data source from a path.

    Args:
        spec: a folder of identity folders; a folder holding ``train.rec``; a ``.rec`` file;
            or a TFRecord prefix / ``*.tfrecord`` shard / its ``.json`` sidecar (written by
            ``python -m training.data.tfrecord``), an :class:`ImageList` (e.g.
            ``TeacherEmbeddings.image_list()``), or an already opened source.
        min_images, max_identities: identity filters for folders
            (see :func:`training.data.folders.list_image_folder`).
    Raises:
        DataError: nothing usable at ``spec``.
    """
    if hasattr(spec, "read") and hasattr(spec, "labels"):
        return spec
    if isinstance(spec, ImageList):
        return FolderSource(spec)
    path = os.fspath(spec)
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "train.rec")):
        return RecordSource(path)
    if path.endswith(".rec") and os.path.isfile(path):
        return RecordSource(os.path.dirname(path) or ".")
    from training.data import tfrecord_index  # numpy-only: no TensorFlow needed

    if tfrecord_index.looks_like_tfrecord(path):
        return tfrecord_index.TFRecordSource(path)
    if os.path.isdir(path):
        return FolderSource(list_image_folder(path, min_images=min_images,
                                              max_identities=max_identities))
    raise DataError(f"{path}: not a folder of identity folders, an insightface train.rec "
                    "folder or TFRecord shards")


def check_crops(source, size=112, probe=8):
    """Refuse sources that are not aligned crops, judged on up to ``probe`` images.

    Raises:
        DataError: a readable probed image is not square (raw photos: align them first).
    """
    shapes = Counter()
    for i in np.linspace(0, len(source) - 1, num=min(probe, len(source))).astype(int):
        try:
            rgb = load_image(source.read(int(i)))
        except (ImageError, RecordError):
            continue  # counted when the loader meets it
        h, w = rgb.shape[:2]
        shapes[(h, w)] += 1
        if h != w:
            raise DataError(
                f"{source.name(int(i))} is {w}x{h}, not a square aligned face crop; "
                f"run `tfface-align SRC DST` first and train on DST")
    return dict(shapes)


def load_face(source, i, size, skipped):
    """Read and decode image ``i`` of ``source``; None (and counted) when it fails."""
    try:
        return decode_face(source.read(i), size)
    except (ImageError, DataError, OSError) as err:
        skipped.add_once(int(i), source.name(i), str(err))
        return None
