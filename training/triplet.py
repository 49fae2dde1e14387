"""Train a FaceNet-style embedding with the triplet loss over identity-balanced P x K batches.

    python -m training.triplet --data ALIGNED_DIR --out runs/facenet

Defaults follow FaceNet (Schroff et al. 2015): Inception-ResNet-v1 at 160x160, unit-length
embeddings, squared Euclidean distances, margin 0.2, online semi-hard negatives; ``--mining
batch_hard`` uses Hermans et al.'s hardest positive/negative per anchor. Each batch holds P
identities with K images each (``--identities-per-batch``, ``--images-per-identity``), so every
anchor has positives and negatives to mine. Running the command again resumes from ``--out``.
"""

import sys

from training.config import TripletConfig
from training.program import run_main

PROG = "python -m training.triplet"


def build_model(backbone):
    """keras.Model float32 (N,S,S,3) -> unit-length float32 embeddings (N, D)."""
    import keras

    from training.models import L2Normalize

    image = keras.Input(backbone.input_shape[1:], name="image")
    emb = L2Normalize(name="l2_normalize")(backbone(image))
    return keras.Model(image, emb, name="triplet_trainer")


def make_loss(cfg):
    from training.losses import BatchHardTripletLoss, SemiHardTripletLoss

    if cfg.mining == "semi_hard":
        return SemiHardTripletLoss(margin=cfg.margin, squared=True)
    return BatchHardTripletLoss(margin=cfg.margin, squared=True)


def pk_shape(cfg):
    """(P, K) of the batches; P defaults to batch size // K."""
    from tfface.errors import DataError

    k = cfg.images_per_identity
    p = cfg.identities_per_batch or cfg.batch_size // max(k, 1)
    if k < 2 or p < 2:
        raise DataError(f"triplet batches need K >= 2 images of P >= 2 identities; received "
                        f"P={p}, K={k} (--identities-per-batch, --images-per-identity)")
    return p, k


def train(cfg):
    import keras

    from training import program, trainer
    from training.data.sampler import PKSampler
    from training.data.sources import open_source
    from training.export_embedding import save_embedding_model

    trainer.set_seed(cfg.seed)
    trainer.set_precision(cfg)
    p, k = pk_shape(cfg)
    source = open_source(cfg.data, min_images=2)
    size = program.input_size(cfg, 160)
    # Identities with fewer than K images take part with repeated images.
    sampler = PKSampler(source.labels, p, k, seed=cfg.seed, oversample=True)
    pipeline = program.make_pipeline(cfg, source, size, sampler=sampler)
    info = {"source": str(cfg.data), "kind": source.kind, "identities": source.num_classes,
            "P": p, "K": k}
    data = program.train_data(pipeline, lambda x, y: (x, y), info, cfg.steps_per_epoch)
    total, _ = trainer.plan_steps(cfg, data.steps_per_epoch)

    scope, replicas = trainer.device_scope()
    with scope:
        backbone = program.build_backbone(cfg, 160)
        model = build_model(backbone)
        trainer.compile_model(model, cfg, make_loss(cfg), total, data.steps_per_epoch)
    print(f"{PROG}: {len(source)} images, {source.num_classes} identities, batches of "
          f"P={p} x K={k}, {data.steps_per_epoch} steps/epoch, {total} steps; "
          f"{trainer.describe_config(cfg)}; mining={cfg.mining}; "
          f"backend={keras.backend.backend()}, replicas={replicas}", file=sys.stderr)
    pair_set, pair_images = program.load_verification_pairs(cfg, size)
    result = trainer.fit(cfg, model, data, program="triplet", embedder=backbone,
                         pair_set=pair_set, pair_images=pair_images)
    path, _ = save_embedding_model(backbone, cfg.out, program="triplet", cfg=cfg,
                                   data_info=data.info, result=result,
                                   extra={"loss": f"triplet/{cfg.mining}",
                                          "margin": cfg.margin,
                                          "skipped_images": data.skipped.count})
    program.report(PROG, result, path)
    return 0


def main(argv=None):
    """Command-line entry point; returns the exit status (0 done, 2 error)."""
    return run_main(TripletConfig, PROG, __doc__.split("\n\n")[0], train, argv)


if __name__ == "__main__":
    raise SystemExit(main())
