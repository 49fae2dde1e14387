"""Plumbing shared by ``python -m training.arcface | triplet | distill``: argument parsing and
error reporting, the backbone, the data pipeline as :class:`training.trainer.TrainData`, and
the verification pairs.

Keras is imported only after ``--backend`` is applied (see :func:`run_main`).
"""

import sys
import traceback

from tfface.errors import TFFaceError
from training import config as config_mod
from training.config import apply_backend, build_parser, config_from_args


def run_main(cls, prog, description, train, argv=None):
    """Parse ``argv`` into ``cls``, select the backend, run ``train(cfg) -> int``.

    Errors of the project (bad options, data, checkpoints) print one line
    ``prog: error: ...`` and return 2; ``--debug`` shows the traceback.
    """
    parser = build_parser(cls, prog, description)
    args = parser.parse_args(argv)
    # Recorded in config.json and the model card.
    config_mod.COMMAND_LINE[:] = prog.split() + list(sys.argv[1:] if argv is None else argv)
    try:
        cfg = config_from_args(cls, args)
        apply_backend(cfg.backend)
        return int(train(cfg) or 0)
    except TFFaceError as err:
        if args.debug:
            traceback.print_exc()
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


def input_size(cfg, default=112):
    return cfg.input_size or default


def build_backbone(cfg, default_size=112):
    """The configured backbone (``--backbone``, ``--embedding-size``, ``--input-size``)."""
    from training.config import backbone_kwargs
    from training.models import get_backbone

    size = input_size(cfg, default_size)
    try:
        backbone = get_backbone(cfg.backbone, embedding_size=cfg.embedding_size,
                            input_shape=(size, size, 3), **backbone_kwargs(cfg))
    except TypeError as err:
        raise TFFaceError(f"--backbone-options do not fit {cfg.backbone}: {err}") from err
    except ValueError as err:
        if isinstance(err, TFFaceError):
            raise
        raise TFFaceError(f"--backbone {cfg.backbone}: {err}") from err
    if cfg.init_weights:
        load_initial_weights(backbone, cfg.init_weights)
    return backbone


def load_initial_weights(backbone, path):
    """Copy the weights of the ``.keras`` embedding model at ``path`` into ``backbone``
    (``--init-weights``); every weight must match in order and shape."""
    import keras

    try:
        import training.models  # noqa: F401  (registers the project's layers)
    except ImportError:
        pass
    try:
        source = keras.saving.load_model(path, compile=False)
    except Exception as err:
        raise TFFaceError(f"--init-weights {path}: cannot load: "
                          f"{str(err).splitlines()[0]}") from err
    want = [tuple(w.shape) for w in backbone.weights]
    have = [tuple(w.shape) for w in source.weights]
    if want != have:
        first = next((i for i, (a, b) in enumerate(zip(want, have)) if a != b),
                     min(len(want), len(have)))
        raise TFFaceError(f"--init-weights {path}: its {len(have)} weights do not fit the "
                          f"{len(want)} of --backbone (first difference at weight {first}: "
                          f"{have[first] if first < len(have) else None} vs "
                          f"{want[first] if first < len(want) else None}); use the same "
                          "--backbone, --backbone-options and --embedding-size")
    for target, value in zip(backbone.weights, source.weights):
        target.assign(keras.ops.convert_to_numpy(value))


def make_pipeline(cfg, source, image_size, sampler=None, targets=None, check=True):
    """A :class:`training.data.pipeline.FacePipeline` with the config's batch size, seed,
    augmentation (``--augmentation`` preset, or none) and cache."""
    from training.data.augment import AugmentConfig
    from training.data.pipeline import FacePipeline

    return FacePipeline(source, batch_size=cfg.batch_size, image_size=image_size, shuffle=True,
                        seed=cfg.seed, augment=(AugmentConfig.named(cfg.augmentation)
                                                if cfg.augment else None),
                        sampler=sampler, targets=targets, drop_remainder=True,
                        cache=bool(cfg.cache), check=check)


def train_data(pipeline, to_xy, info, steps_per_epoch=0):
    """Wrap a pipeline as :class:`training.trainer.TrainData`.

    Args:
        pipeline: FacePipeline.
        to_xy: maps one batch tuple (images, labels[, targets]) to the ``(x, y)`` the model
            trains on; must work on numpy arrays and on tf tensors.
        info: data description for the model card.
        steps_per_epoch: ``--steps-per-epoch``; 0 = one pass of the pipeline.

    The stream of each ``fit`` call starts at (epoch, skip) and does not end, so an epoch that
    lost a batch to unreadable images still has its full number of steps.
    """
    import keras

    from training.trainer import TrainData

    def batches(epoch, skip):
        if keras.backend.backend() == "tensorflow":
            ds = pipeline.tf_dataset(epochs=None, start_epoch=epoch, start_batch=skip)
            return ds.map(lambda *b: to_xy(*b))
        return (to_xy(*b) for b in pipeline.numpy_batches(epochs=None, start_epoch=epoch,
                                                            start_batch=skip))

    info = {**info, "images": len(pipeline.source), "batch_size": pipeline.batch_size,
            "augment": pipeline.augment.to_dict() if pipeline.augment.enabled else None}
    steps = steps_per_epoch or pipeline.steps_per_epoch
    return TrainData(steps, batches, info, pipeline.skipped)


def load_verification_pairs(cfg, size):
    """(PairSet, uint8 crops (M, size, size, 3)) for ``--pairs``, or (None, None)."""
    if not cfg.pairs:
        return None, None
    from eval.pairs import load_pairs
    from training.callbacks import load_pair_images

    pair_set = load_pairs(cfg.pairs, cfg.pairs_images)
    return pair_set, load_pair_images(pair_set, size)


def report(prog, result, model_path):
    """One summary line on stderr at the end of a run."""
    metrics = ", ".join(f"{k}={v:.4g}" for k, v in result.metrics().items())
    print(f"{prog}: trained to step {result.step} ({result.images_per_second:.1f} img/s); "
          f"{metrics}; model: {model_path}", file=sys.stderr)
