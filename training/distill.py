"""Distil a teacher's face embeddings into a small student (MobileID, Luo et al. 2016).

    python -m training.distill --data ../shared/data --out runs/mobileid

The student regresses, per image, the teacher's descriptor from ``--teacher`` files (``.npz``
with ``path``, ``emb``, ``emb_flip``; default ``DATA/teacher/*.npz``; paths relative to
``--data``). Targets are centred by the mean teacher descriptor of the training rows (saved
as ``teacher_mean.json``): raw dlib descriptors share a large common component and a student
can sit on the centroid with a small loss. A mirrored training image is matched with the
teacher's ``emb_flip``. A linear projection maps the student to the teacher's size when the
two differ; ``--arcface-weight`` adds an ArcFace term on images whose parent folder names an
identity (``celeba/<id>/x.jpg``; flat folders such as ``utkface/`` are unlabelled).

With ``--teacher-model FILE`` (e.g. the imported dlib ResNet) there are no ``.npz`` files: the
teacher embeds every augmented training crop on the fly (:mod:`training.teacher_model`), so
any folder of aligned face crops under ``--data`` can be used, with any augmentation:
``--augmentation strong`` (rotation/scale/shift, colour, grey, blur) and ``--mixup A`` (part of
each batch blended with Beta(A, A) weights) make it "function matching" (Beyer et al. 2022),
the student learning the teacher's function on inputs around the data, not just at it.
"""

import glob
import os
import sys

from training.config import DistillConfig
from training.program import run_main

PROG = "python -m training.distill"
MEAN_FILE = "teacher_mean.json"


def teacher_files(cfg):
    """``--teacher`` files, or ``DATA/teacher/*.npz`` when none are given."""
    from tfface.errors import DataError

    files = list(cfg.teacher) or sorted(glob.glob(os.path.join(cfg.data, "teacher", "*.npz")))
    if not files:
        raise DataError(f"no teacher embeddings: give --teacher FILE.npz (none found in "
                        f"{os.path.join(cfg.data, 'teacher')})")
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise DataError(f"--teacher {missing[0]}: no such file")
    return files


def identity_labels(paths, root):
    """Label per image from its folder: ``<set>/<identity>/<file>`` under ``root`` is labelled
    ``<set>/<identity>``; images directly in a set folder (``utkface/x.jpg``) get -1.

    Returns:
        (int64 labels (N,), class names list).
    """
    import numpy as np

    names = []
    for p in paths:
        rel = os.path.relpath(p, root).split(os.sep)
        names.append("/".join(rel[:-1]) if len(rel) >= 3 else None)
    classes = sorted({n for n in names if n is not None})
    index = {n: i for i, n in enumerate(classes)}
    return np.array([index.get(n, -1) for n in names], dtype=np.int64), classes


def masked_cross_entropy(labels, logits):
    """Mean sparse softmax cross-entropy over rows with a label >= 0 (0 when none)."""
    from keras import ops

    labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
    valid = ops.cast(labels >= 0, "float32")
    ce = ops.sparse_categorical_crossentropy(ops.maximum(labels, 0),
                                             ops.cast(logits, "float32"), from_logits=True)
    return ops.sum(ce * valid) / ops.maximum(ops.sum(valid), 1.0)


def build_model(cfg, backbone, teacher_dim, num_classes):
    """Training model {"image", "label"} -> {"distill": (N, teacher_dim)[, "logits"]}."""
    import keras

    from training.heads import CombinedMarginHead

    image = keras.Input(backbone.input_shape[1:], name="image")
    label = keras.Input((), dtype="int32", name="label")
    emb = backbone(image)
    student_dim = int(backbone.output_shape[-1])
    project = cfg.projection == "on" or (cfg.projection == "auto" and student_dim != teacher_dim)
    if not project and student_dim != teacher_dim:
        raise ValueError(f"student embedding {student_dim} != teacher {teacher_dim}: use "
                         "--projection auto/on or --embedding-size equal to the teacher's")
    target = (keras.layers.Dense(teacher_dim, use_bias=False, dtype="float32",
                                 name="projection")(emb) if project else emb)
    outputs = {"distill": keras.layers.Identity(name="distill", dtype="float32")(target)}
    if cfg.arcface_weight > 0:
        head = CombinedMarginHead(num_classes, scale=cfg.scale, m1=1.0, m2=cfg.m2, m3=0.0,
                                  name="logits")
        outputs["logits"] = head([emb, label])
    return keras.Model({"image": image, "label": label}, outputs, name="distill_trainer"), \
        project


class _TeacherStats:
    """What the rest of training needs to know of an on-the-fly teacher."""

    def __init__(self, dim, mean, rows):
        self.dim, self.mean, self.rows = dim, mean, rows

    def __len__(self):
        return self.rows


def on_the_fly_setup(cfg, size, with_ce):
    """Source, labels, teacher stats, pipeline, info and ``to_xy`` for ``--teacher-model``:
    targets are the teacher's embeddings of each augmented batch (see training.teacher_model),
    centred by the teacher's mean over (up to 512) un-augmented training images."""
    import numpy as np

    from tfface.core.image import load_image
    from tfface.core.preprocess import normalize_face
    from tfface.errors import DataError
    from training import program
    from training.data.folders import IMAGE_EXTENSIONS, ImageList
    from training.data.mixup import batch_rng, mix_batch
    from training.data.sources import FolderSource
    from training.teacher_model import OnTheFlyTeacher

    root = os.path.abspath(cfg.data)
    paths = sorted(os.path.join(d, f) for d, _, files in os.walk(root, followlinks=True)
                   for f in files if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS)
    if not paths:
        raise DataError(f"no images under {cfg.data}")
    # TFLite's default thread count is 1 on some builds; the teacher runs between steps.
    teacher = OnTheFlyTeacher(cfg.teacher_model, student_size=size,
                              num_threads=os.cpu_count() or 1)
    labels, classes = identity_labels(paths, root)
    rng = np.random.default_rng(cfg.seed)
    probe = [paths[i] for i in sorted(rng.choice(len(paths), min(512, len(paths)),
                                                 replace=False))]
    import cv2

    crops = [cv2.resize(load_image(p), (size, size), interpolation=cv2.INTER_AREA)
             for p in probe]
    mean = (teacher(normalize_face(np.stack(crops))).mean(axis=0) if cfg.center
            else np.zeros(teacher.dim, np.float32)).astype(np.float32)
    stats = _TeacherStats(teacher.dim, mean, len(probe))
    source = FolderSource(ImageList(paths, labels, classes, root))
    pipeline = program.make_pipeline(cfg, source, size)
    info = {"source": str(cfg.data), "teacher": [os.path.abspath(cfg.teacher_model)],
            **teacher.describe(), "centered": bool(cfg.center), "mean_from_images": len(probe),
            "labelled_images": int((labels >= 0).sum()), "identities": len(classes)}

    if cfg.mixup:
        info["mixup"] = {"alpha": cfg.mixup, "prob": cfg.mixup_prob}

    def targets_np(images, labels):
        labels = np.asarray(labels, dtype=np.int32)
        if cfg.mixup:
            images, labels = mix_batch(images, labels, cfg.mixup, cfg.mixup_prob,
                                       batch_rng(images))
        return (np.asarray(images, np.float32), labels,
                (teacher(images) - mean).astype(np.float32))

    def to_xy(images, labels):
        if isinstance(images, np.ndarray):
            images, labels, targets = targets_np(images, labels)
        else:  # a tf.data map: run the (numpy/TFLite) teacher through numpy_function
            import tensorflow as tf

            shape = images.shape
            images, labels, targets = tf.numpy_function(
                targets_np, [images, labels], (tf.float32, tf.int32, tf.float32))
            images.set_shape(shape)
            labels.set_shape([shape[0]])
            targets.set_shape([shape[0], teacher.dim])
        y = {"distill": targets, "logits": labels} if with_ce else {"distill": targets}
        return {"image": images, "label": labels}, y

    return source, labels, classes, stats, pipeline, info, to_xy


def train(cfg):
    import keras
    import numpy as np

    from tfface.errors import DataError
    from training import program, trainer
    from training.data.folders import ImageList
    from training.data.sources import FolderSource
    from training.data.teacher import load_teacher, save_teacher_mean
    from training.export_embedding import save_embedding_model
    from training.losses import DistillationLoss

    trainer.set_seed(cfg.seed)
    trainer.set_precision(cfg)
    size = program.input_size(cfg, 112)
    with_ce = cfg.arcface_weight > 0
    if cfg.teacher_model:
        source, labels, classes, teacher, pipeline, info, to_xy = on_the_fly_setup(
            cfg, size, with_ce)
        files = [cfg.teacher_model]
    else:
        files = teacher_files(cfg)
        teacher = load_teacher(files, cfg.data)
        if cfg.center:
            teacher = teacher.centered()
        labels, classes = identity_labels(teacher.paths, os.path.abspath(cfg.data))
        source = FolderSource(ImageList(list(teacher.paths), labels, classes,
                                        os.path.abspath(cfg.data)))
        pipeline = program.make_pipeline(cfg, source, size, targets=teacher.targets())
        info = {"source": str(cfg.data), "teacher": [os.path.abspath(f) for f in files],
                "teacher_dim": teacher.dim, "centered": bool(cfg.center),
                "labelled_images": int((labels >= 0).sum()), "identities": len(classes)}

        def to_xy(images, labels, targets):
            y = {"distill": targets, "logits": labels} if with_ce else {"distill": targets}
            return {"image": images, "label": labels}, y

    if with_ce and len(classes) < 2:
        raise DataError("--arcface-weight needs labelled images (<set>/<identity>/<file>) of "
                        f"at least 2 identities under {cfg.data}; found {len(classes)}")

    data = program.train_data(pipeline, to_xy, info, cfg.steps_per_epoch)
    total, _ = trainer.plan_steps(cfg, data.steps_per_epoch)
    out = os.path.abspath(cfg.out)
    os.makedirs(out, exist_ok=True)
    if cfg.center:
        save_teacher_mean(os.path.join(out, MEAN_FILE), teacher.mean,
                          teacher=[os.path.abspath(f) for f in files], rows=len(teacher))

    scope, replicas = trainer.device_scope()
    with scope:
        backbone = program.build_backbone(cfg, 112)
        try:
            model, projected = build_model(cfg, backbone, teacher.dim, max(len(classes), 2))
        except ValueError as err:
            raise DataError(str(err)) from err
        losses = {"distill": DistillationLoss(kind=cfg.distill_loss)}
        weights = {"distill": 1.0}
        if with_ce:
            losses["logits"] = masked_cross_entropy
            weights["logits"] = cfg.arcface_weight
        trainer.compile_model(model, cfg, losses, total, data.steps_per_epoch,
                              loss_weights=weights)
    print(f"{PROG}: {len(source)} images ({info['labelled_images']} labelled, "
          f"{len(classes)} identities), teacher dim {teacher.dim}, {data.steps_per_epoch} "
          f"steps/epoch, {total} steps; {trainer.describe_config(cfg)}; "
          f"loss={cfg.distill_loss}, projection={projected}; "
          f"backend={keras.backend.backend()}, replicas={replicas}", file=sys.stderr)
    pair_set, pair_images = program.load_verification_pairs(cfg, size)
    result = trainer.fit(cfg, model, data, program="distill", embedder=backbone,
                         pair_set=pair_set, pair_images=pair_images,
                         config_extra={"teacher_dim": teacher.dim, "projection": projected})
    extra = {"teacher": info["teacher"], "distill_loss": cfg.distill_loss,
             "teacher_mean_file": MEAN_FILE if cfg.center else None,
             "projection": projected, "skipped_images": data.skipped.count}
    if projected:
        kernel = keras.ops.convert_to_numpy(model.get_layer("projection").kernel)
        np.save(os.path.join(out, "projection.npy"), kernel)
        extra["projection_weights"] = "projection.npy (float32 (student, teacher) matrix)"
    path, _ = save_embedding_model(backbone, out, program="distill", cfg=cfg,
                                   data_info=data.info, result=result, extra=extra)
    program.report(PROG, result, path)
    return 0


def main(argv=None):
    """Command-line entry point; returns the exit status (0 done, 2 error)."""
    return run_main(DistillConfig, PROG, __doc__.split("\n\n")[0], train, argv)


if __name__ == "__main__":
    raise SystemExit(main())
