"""Face training data: sources, sampling, augmentation and batch pipelines.

Sources (all random-access, with int64 ``labels`` and ``read(i) -> bytes | path``):

- identity folders ``root/<identity>/*.jpg`` of aligned crops (``tfface-align SRC DST``
  makes them from raw photos): :func:`list_image_folder`, :class:`FolderSource`;
- insightface ``train.rec``/``train.idx``/``property``, read without MXNet:
  :class:`InsightFaceRecord`, :class:`RecordSource`;
- TFRecord shards from ``python -m training.data.tfrecord SRC PREFIX --shards N``, read
  without TensorFlow: :class:`TFRecordSource` (``tfrecord_dataset`` streams them in tf.data);
- teacher embeddings ``teacher/*.npz`` for distillation: :func:`load_teacher`.

:func:`open_source` picks the kind from a path. :class:`FacePipeline` turns a source into
batches ``(images float32 (B, 112, 112, 3), labels int32 (B,)[, targets float32 (B, D)])``,
as a ``tf.data.Dataset`` (``.tf_dataset()``) or a numpy iterator (``.numpy_batches()``, for
Keras on JAX), with seeded shuffling or :class:`PKSampler` P x K batches, augmentation
(:class:`AugmentConfig`), a decoded-image cache and background prefetch. Unreadable images
are skipped and counted in ``FacePipeline.skipped``.

TensorFlow is imported only by ``FacePipeline.tf_dataset`` and ``training.data.tfrecord``.
"""

from training.data.augment import AugmentConfig, augment_face
from training.data.folders import (
    IMAGE_EXTENSIONS,
    ImageList,
    list_flat_folder,
    list_image_folder,
    split_by_identity,
)
from training.data.pipeline import FacePipeline, numpy_batches, tf_dataset
from training.data.recordio import InsightFaceRecord, RecordError, RecordFile, unpack_header
from training.data.sampler import PKSampler
from training.data.sources import (
    FolderSource,
    RecordSource,
    SkipCounter,
    check_crops,
    decode_face,
    open_source,
)
from training.data.teacher import (
    TeacherEmbeddings,
    load_teacher,
    load_teacher_mean,
    save_teacher_mean,
    select_targets,
)
from training.data.tfrecord_index import TFRecordSource

__all__ = [
    "AugmentConfig", "augment_face", "IMAGE_EXTENSIONS", "ImageList", "list_flat_folder",
    "list_image_folder", "split_by_identity", "FacePipeline", "numpy_batches", "tf_dataset",
    "InsightFaceRecord", "RecordError", "RecordFile", "unpack_header", "PKSampler",
    "FolderSource", "RecordSource", "SkipCounter", "check_crops", "decode_face", "open_source",
    "TeacherEmbeddings", "load_teacher", "load_teacher_mean", "save_teacher_mean",
    "select_targets", "TFRecordSource",
]
