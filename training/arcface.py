"""Train a face-recognition backbone with a classification head: ArcFace, CosFace, combined
margins, softmax, normalised softmax or MultiFace's multi-head classifier.

    python -m training.arcface --data ALIGNED_DIR --out runs/arcface

``--data``: aligned crops, one folder per identity (or an insightface ``train.rec`` folder,
or TFRecord shards from ``python -m training.data.tfrecord``). Running the same command again
resumes from the newest checkpoint in ``--out``. The result is ``--out/embedding.keras``
(backbone without the head) and ``embedding.json`` (its model card).
"""

import sys

from training.config import ArcFaceConfig
from training.program import run_main

PROG = "python -m training.arcface"


def head_margins(cfg):
    """(preset, overrides) for CombinedMarginHead: the head's preset plus any --m1/--m2/--m3."""
    preset = {"arcface": "arcface", "cosface": "cosface", "combined": "combined",
              "normsoftmax": "norm_softmax", "multihead": "arcface"}[cfg.head]
    overrides = {k: getattr(cfg, k) for k in ("m1", "m2", "m3") if getattr(cfg, k) is not None}
    return preset, overrides


def build_head(cfg, num_classes):
    """The classification head layer: inputs [embeddings, labels] -> float32 logits."""
    from training import heads

    if cfg.head == "softmax":
        return heads.CombinedMarginHead.from_preset("softmax", num_classes, name="head")
    preset, overrides = head_margins(cfg)
    if cfg.head == "multihead":
        margins = {**heads.MARGIN_PRESETS[preset], **overrides, "scale": cfg.scale}
        return heads.MultiHeadClassifier(num_classes, num_heads=cfg.num_heads,
                                         head_config=margins, name="head")
    return heads.CombinedMarginHead.from_preset(preset, num_classes, scale=cfg.scale,
                                                name="head", **overrides)


def build_model(backbone, head):
    """keras.Model {"image": float32 (N,S,S,3), "label": int32 (N,)} -> logits (N, C)."""
    import keras

    size = backbone.input_shape[1:]
    image = keras.Input(size, name="image")
    label = keras.Input((), dtype="int32", name="label")
    logits = head([backbone(image), label])
    return keras.Model({"image": image, "label": label}, logits, name="arcface_trainer")


def train(cfg):
    import keras

    from training import program, trainer
    from training.data.sources import open_source
    from training.export_embedding import save_embedding_model

    trainer.set_seed(cfg.seed)
    trainer.set_precision(cfg)
    source = open_source(cfg.data, min_images=1)
    size = program.input_size(cfg, 112)
    pipeline = program.make_pipeline(cfg, source, size)
    info = {"source": str(cfg.data), "kind": source.kind, "identities": source.num_classes}
    n_out = cfg.num_heads if cfg.head == "multihead" else 1
    data = program.train_data(pipeline, lambda x, y: _to_xy(x, y, n_out), info,
                              cfg.steps_per_epoch)
    total, _ = trainer.plan_steps(cfg, data.steps_per_epoch)

    scope, replicas = trainer.device_scope()
    with scope:
        backbone = program.build_backbone(cfg, 112)
        head = build_head(cfg, source.num_classes)
        model = build_model(backbone, head)
        trainer.compile_model(model, cfg, _losses(cfg, source.num_classes, n_out), total,
                              data.steps_per_epoch, metrics=_metrics(n_out))
    print(f"{PROG}: {len(source)} images, {source.num_classes} identities, "
          f"{data.steps_per_epoch} steps/epoch, {total} steps; {trainer.describe_config(cfg)}; "
          f"head={cfg.head}; backend={keras.backend.backend()}, replicas={replicas}",
          file=sys.stderr)
    pair_set, pair_images = program.load_verification_pairs(cfg, size)
    result = trainer.fit(cfg, model, data, program="arcface", embedder=backbone,
                         pair_set=pair_set, pair_images=pair_images,
                         config_extra={"num_classes": source.num_classes})
    path, _ = save_embedding_model(backbone, cfg.out, program="arcface", cfg=cfg,
                                   data_info=data.info, result=result,
                                   extra={"head": cfg.head, "num_classes": source.num_classes,
                                          "skipped_images": data.skipped.count})
    program.report(PROG, result, path)
    return 0


def _to_xy(images, labels, n_out):
    """Model inputs (images and labels: the margin needs the label) and targets; the
    multi-head model has one target per head."""
    x = {"image": images, "label": labels}
    return (x, labels) if n_out == 1 else (x, tuple([labels] * n_out))


def _losses(cfg, num_classes, n_out):
    import keras

    def one():
        if cfg.label_smoothing:
            return _smoothed_loss(cfg.label_smoothing, num_classes)
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    # MultiFace: Keras sums the per-output losses (training.losses.multi_head_cross_entropy).
    return one() if n_out == 1 else [one() for _ in range(n_out)]


def _metrics(n_out):
    import keras

    def acc():
        return keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    return [acc()] if n_out == 1 else [[acc()] for _ in range(n_out)]


def _smoothed_loss(smoothing, num_classes):
    """Cross-entropy with label smoothing on integer labels (Keras' sparse loss has none)."""
    import keras

    def loss(y_true, y_pred):
        onehot = keras.ops.one_hot(keras.ops.reshape(keras.ops.cast(y_true, "int32"), (-1,)),
                                   num_classes)
        return keras.losses.categorical_crossentropy(onehot, y_pred, from_logits=True,
                                                     label_smoothing=smoothing)

    return loss


def main(argv=None):
    """Command-line entry point; returns the exit status (0 done, 2 error)."""
    return run_main(ArcFaceConfig, PROG, __doc__.split("\n\n")[0], train, argv)


if __name__ == "__main__":
    raise SystemExit(main())
