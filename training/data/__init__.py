"""Face training data: sources, sampling, augmentation and batch pipelines.

Sources (all random-access, with int64 ``labels`` and ``read(i) -> bytes | path``):

- identity folders ``root/<identity>/*.jpg`` of aligned crops: :func:`list_image_folder`,
  :class:`FolderSource`;
- insightface ``train.rec``/``train.idx``/``property``, read without MXNet:
  :class:`InsightFaceRecord`, :class:`RecordSource`;
- TFRecord shards from ``python -m training.data.tfrecord SRC PREFIX --shards N``, read
  without TensorFlow: :class:`TFRecordSource` (``tfrecord.tfrecord_dataset`` streams them);
- teacher embeddings ``teacher/*.npz`` for distillation: :func:`load_teacher`.

Raw photos: run ``tfface-align SRC DST`` first and train on DST. The pipelines take square
images: 112x112 crops as they are, other square sizes resized whole (so 160px UTKFace or
250px CelebA loose crops load, unaligned); a source whose probed images are not square is
refused with a one-line :class:`tfface.errors.DataError` naming ``tfface-align``.

:func:`open_source` picks the kind from a path. :class:`FacePipeline` turns a source into
batches ``(images float32 (B, 112, 112, 3), labels int32 (B,)[, targets float32 (B, D)])``,
as a ``tf.data.Dataset`` (``.tf_dataset()``) or a numpy iterator (``.numpy_batches()``, for
Keras on JAX), with seeded shuffling or P x K batches (``pk=(P, K)``), augmentation
(:class:`AugmentConfig`), a decoded-image cache, background threads or processes, and
resumable positions (``start_epoch``, ``start_batch``). Unreadable images are skipped and
counted in ``FacePipeline.skipped``. Typical use::

    train = FacePipeline("aligned/celeba", batch_size=128, augment=AugmentConfig())
    batches = train.numpy_batches(start_epoch=epoch, start_batch=step % train.steps_per_epoch)
    triplets = FacePipeline("aligned/celeba", pk=(30, 4), augment=AugmentConfig())
    teacher = load_teacher(["teacher/utkface.npz"], data_root).centered()
    distill = FacePipeline(teacher.image_list(), targets=teacher.targets(),
                           augment=AugmentConfig())   # save teacher.mean with the model

TensorFlow is imported only by ``FacePipeline.tf_dataset`` and ``training.data.tfrecord``.
"""

from training.data.augment import AugmentConfig, augment_face
from training.data.cache import DecodedCache
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
    "IMAGE_EXTENSIONS",
    "AugmentConfig",
    "DecodedCache",
    "FacePipeline",
    "FolderSource",
    "ImageList",
    "InsightFaceRecord",
    "PKSampler",
    "RecordError",
    "RecordFile",
    "RecordSource",
    "SkipCounter",
    "TFRecordSource",
    "TeacherEmbeddings",
    "augment_face",
    "check_crops",
    "decode_face",
    "list_flat_folder",
    "list_image_folder",
    "load_teacher",
    "load_teacher_mean",
    "numpy_batches",
    "open_source",
    "save_teacher_mean",
    "select_targets",
    "split_by_identity",
    "tf_dataset",
    "unpack_header",
]
