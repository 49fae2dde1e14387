"""Training options as frozen dataclasses, the argparse parser built from them, and the
resolved config saved beside the checkpoints.

The shape follows arcface_torch's base + override (``configs/base.py``), but a frozen dataclass
makes a misspelt option an error instead of a new field. Every field carries its ``--help`` text
in its metadata, so the parser, the saved JSON and the documentation cannot drift apart.

No keras import here: ``--backend`` must be applied before Keras is first imported.
"""

import argparse
import dataclasses
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tfface.errors import DataError

CONFIG_FILE = "config.json"
# The command line of the running program, set by training.program.run_main (sys.argv when a
# config is saved outside it).
COMMAND_LINE = []


def opt(default, help, choices=None, nargs=None, type=None, metavar=None):
    """A dataclass field with its command-line description (help, choices, nargs)."""
    meta = {"help": help, "choices": choices, "nargs": nargs, "type": type, "metavar": metavar}
    if isinstance(default, (list, dict)):
        raise TypeError("use a tuple for sequence defaults (frozen config)")
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class CommonConfig:
    """Options every training program shares."""

    data: str = opt("", "training data: a folder of aligned crops with one sub-folder per "
                    "identity (required)", metavar="DIR")
    out: str = opt("", "output dir: config.json, checkpoints/, logs/, the final model "
                   "(required). Running again with the same --out resumes.", metavar="DIR")
    backbone: str = opt("mobilefacenet", "backbone network (training.models.get_backbone name)")
    backbone_options: tuple = opt((), "extra backbone arguments as KEY=VALUE (values parsed as "
                                  "JSON when possible), e.g. activation=relu", nargs="*",
                                  type=str, metavar="KEY=VALUE")
    embedding_size: int = opt(128, "embedding dimension")
    input_size: int = opt(0, "square input size in pixels; 0 = the backbone's default "
                          "(112, or 160 for inception_resnet_v1)")
    batch_size: int = opt(128, "images per training step (over all devices)")
    epochs: int = opt(20, "passes over the data (ignored when --steps is set)")
    steps: int = opt(0, "total training steps; 0 = epochs x steps-per-epoch")
    steps_per_epoch: int = opt(0, "steps in one epoch (checkpoint, log and verification "
                               "period); 0 = one pass over the images (images // batch size)")
    optimizer: str = opt("sgd", "optimizer: SGD with Nesterov-free momentum, or AdamW",
                         choices=("sgd", "adamw"))
    lr: float = opt(0.1, "peak learning rate (after warm-up)")
    momentum: float = opt(0.9, "SGD momentum")
    weight_decay: float = opt(5e-4, "weight decay (decoupled; not applied to biases and "
                              "BatchNorm/PReLU parameters)")
    lr_schedule: str = opt("cosine", "learning-rate schedule after warm-up",
                           choices=("cosine", "piecewise", "constant"))
    warmup_epochs: float = opt(1.0, "linear warm-up length in epochs (fractions allowed)")
    lr_milestones: tuple = opt((0.4, 0.7, 0.9), "piecewise: where the LR drops, as fractions of "
                               "the total steps", nargs="+", type=float)
    lr_decay: float = opt(0.1, "piecewise: factor applied at each milestone")
    min_lr_ratio: float = opt(0.0, "cosine: final LR as a fraction of the peak")
    mixed_precision: str = opt("off", "mixed precision policy: float16 (GPU, with loss "
                               "scaling), bfloat16 (GPU/TPU/recent CPUs) or off",
                               choices=("off", "float16", "bfloat16"))
    jit_compile: str = opt("auto", "XLA-compile the train step: auto = Keras' default (on for "
                           "JAX, XLA-if-possible on TF)", choices=("auto", "on", "off"))
    checkpoint_every: int = opt(500, "save a checkpoint every N steps (and at each epoch end)")
    keep_checkpoints: int = opt(3, "how many recent checkpoints to keep")
    resume: bool = opt(True, "resume from the last checkpoint in --out if there is one")
    pairs: str = opt("", "pairs file for a verification callback (LFW pairs.txt, CSV or "
                     "insightface .bin); evaluation only, never used for training", metavar="FILE")
    pairs_images: str = opt("", "folder of the pairs' images (aligned crops) for --pairs",
                            metavar="DIR")
    verify_every: int = opt(1, "run the verification callback every N epochs")
    log_every: int = opt(20, "write step scalars (loss, accuracy, LR) every N steps")
    seed: int = opt(1234, "random seed (weights, shuffling, augmentation)")
    augment: bool = opt(True, "augment training images (see --augmentation); --no-augment: off")
    augmentation: str = opt("light", "light: flip, small crop, colour jitter; strong: also "
                            "rotation/scale/shift, grey-scale and blur (for --teacher-model "
                            "distillation, where targets follow the pixels)",
                            choices=("light", "strong"))
    cache: bool = opt(False, "keep decoded images in memory after the first epoch")
    backend: str = opt("auto", "Keras backend: tensorflow or jax; auto = KERAS_BACKEND or "
                       "Keras' default. Printed at start and saved in config.json",
                       choices=("auto", "tensorflow", "jax"))
    progress: bool = opt(True, "tqdm progress bar on stderr")
    init_weights: str = opt("", "start from the weights of this embedding model (the .keras of "
                            "an earlier run with the same --backbone and options): fine-tuning "
                            "or a longer schedule. A checkpoint in --out, when resuming, wins",
                            metavar="FILE")


@dataclass(frozen=True)
class ArcFaceConfig(CommonConfig):
    """ArcFace / CosFace / softmax classification training (MobileFaceNet, IR-SE50)."""

    head: str = opt("arcface", "classification head: arcface (m2), cosface (m3), combined "
                    "(m1, m2, m3), softmax, normsoftmax (cosine logits, no margin) or multihead",
                    choices=("arcface", "cosface", "combined", "softmax", "normsoftmax",
                             "multihead"))
    scale: float = opt(64.0, "logit scale s of the cosine heads")
    m1: float = opt(None, "multiplicative angular margin (SphereFace); default: the head's "
                    "preset (arcface 1, cosface 1, combined 1)")
    m2: float = opt(None, "additive angular margin; default: the head's preset (arcface 0.5, "
                    "cosface 0, combined 0.3)")
    m3: float = opt(None, "additive cosine margin; default: the head's preset (arcface 0, "
                    "cosface 0.35, combined 0.2)")
    num_heads: int = opt(2, "multihead: number of sub-heads over class partitions")
    label_smoothing: float = opt(0.0, "label smoothing of the cross-entropy")


@dataclass(frozen=True)
class TripletConfig(CommonConfig):
    """FaceNet triplet training over identity-balanced PxK batches."""

    backbone: str = opt("inception_resnet_v1", "backbone network (training.models.get_backbone "
                        "name)")
    input_size: int = opt(160, "square input size in pixels")
    mining: str = opt("semi_hard", "triplet mining inside each batch",
                      choices=("semi_hard", "batch_hard"))
    margin: float = opt(0.2, "triplet margin (squared L2 distance on unit embeddings)")
    identities_per_batch: int = opt(0, "P of the PxK batch; 0 = batch size // K")
    images_per_identity: int = opt(4, "K of the PxK batch")
    batch_size: int = opt(120, "images per training step (P x K)")
    optimizer: str = opt("adamw", "optimizer", choices=("sgd", "adamw"))
    lr: float = opt(1e-3, "peak learning rate (after warm-up)")
    weight_decay: float = opt(1e-4, "weight decay (decoupled; not on biases/BatchNorm)")


@dataclass(frozen=True)
class DistillConfig(CommonConfig):
    """MobileID-style distillation: the student regresses a teacher's (centred) embeddings."""

    data: str = opt("", "folder the teacher files' image paths are relative to (e.g. "
                    "../shared/data for celeba/<id>/x.jpg); square face crops, resized to the "
                    "input size (required)", metavar="DIR")
    backbone: str = opt("mobileid", "student backbone (training.models.get_backbone name)")
    teacher: tuple = opt((), "teacher embedding files (.npz with path, emb, emb_flip); paths "
                         "in them are relative to --data", nargs="+", metavar="NPZ")
    teacher_model: str = opt("", "teacher model (.tflite or .keras with its JSON card, e.g. "
                             "saved_models/dlib_resnet/dlib_resnet_int8.tflite): targets "
                             "computed on the fly from each augmented crop, for any face folder "
                             "under --data, instead of --teacher files", metavar="FILE")
    distill_loss: str = opt("cosine", "distance between student and centred teacher embedding",
                            choices=("cosine", "l2"))
    projection: str = opt("auto", "linear projection from student to teacher dimension: auto = "
                          "only when the sizes differ", choices=("auto", "on", "off"))
    center: bool = opt(True, "subtract the teacher's training-set mean embedding (saved as "
                       "teacher_mean.json); without it a student can settle on the centroid")
    mixup: float = opt(0.0, "--teacher-model only: blend a training face with another of its "
                       "batch, weight ~ Beta(a, a) with this a (0 = off), and distil the "
                       "teacher's embedding of the blend (function matching)")
    mixup_prob: float = opt(0.5, "fraction of each batch that --mixup blends")
    arcface_weight: float = opt(0.0, "weight of an extra ArcFace term on labelled images "
                                "(identity = parent folder, e.g. celeba/<id>); 0 = off")
    scale: float = opt(64.0, "ArcFace term: logit scale")
    m2: float = opt(0.5, "ArcFace term: additive angular margin")
    optimizer: str = opt("adamw", "optimizer", choices=("sgd", "adamw"))
    lr: float = opt(1e-3, "peak learning rate (after warm-up)")
    weight_decay: float = opt(1e-4, "weight decay (decoupled; not on biases/BatchNorm)")


def _flag(name):
    return "--" + name.replace("_", "-")


def build_parser(cls, prog, description):
    """argparse parser with one option per field of ``cls`` (defaults shown in --help)."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for f in dataclasses.fields(cls):
        meta = f.metadata
        kw = {"help": meta["help"], "default": f.default, "dest": f.name}
        if f.type is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            # Sequence fields hold a tuple of items; argparse converts each item.
            kw["type"] = meta["type"] or (str if f.type is tuple else f.type)
            if meta["nargs"]:
                kw["nargs"] = meta["nargs"]
            if meta["choices"]:
                kw["choices"] = meta["choices"]
            if meta["metavar"]:
                kw["metavar"] = meta["metavar"]
        parser.add_argument(_flag(f.name), **kw)
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    return parser


def config_from_args(cls, args):
    """The frozen config from parsed args; checks the values argparse cannot."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)}
    for f in dataclasses.fields(cls):
        if f.metadata["nargs"]:
            values[f.name] = tuple(values[f.name])
    cfg = cls(**values)
    validate(cfg)
    return cfg


def validate(cfg):
    """Raise DataError naming the option for values that cannot work."""
    if not cfg.data:
        raise DataError("--data is required (a folder of aligned crops, one folder per identity)")
    if not cfg.out:
        raise DataError("--out is required (where checkpoints, logs and the model go)")
    positive = ("batch_size", "embedding_size", "checkpoint_every", "log_every", "verify_every",
                "keep_checkpoints")
    for name in positive:
        if getattr(cfg, name) <= 0:
            raise DataError(f"{_flag(name)} must be positive; received {getattr(cfg, name)}")
    for name in ("epochs", "steps", "steps_per_epoch", "input_size"):
        if getattr(cfg, name) < 0:
            raise DataError(f"{_flag(name)} must be >= 0; received {getattr(cfg, name)}")
    if cfg.epochs == 0 and cfg.steps == 0:
        raise DataError("set --epochs or --steps to a positive number")
    if cfg.lr <= 0:
        raise DataError(f"--lr must be positive; received {cfg.lr}")
    if not 0 <= cfg.weight_decay < 1:
        raise DataError(f"--weight-decay must be in [0, 1); received {cfg.weight_decay}")
    backbone_kwargs(cfg)
    if cfg.warmup_epochs < 0:
        raise DataError(f"--warmup-epochs must be >= 0; received {cfg.warmup_epochs}")
    ms = cfg.lr_milestones
    if any(not 0 < m < 1 for m in ms) or list(ms) != sorted(ms):
        raise DataError(f"--lr-milestones must be increasing fractions in (0, 1); received {ms}")
    if bool(cfg.pairs) != bool(cfg.pairs_images):
        raise DataError("--pairs and --pairs-images go together (a pairs file and its images)")
    if getattr(cfg, "mixup", 0.0):
        if cfg.mixup < 0 or not 0 < cfg.mixup_prob <= 1:
            raise DataError(f"--mixup must be >= 0 and --mixup-prob in (0, 1]; received "
                            f"{cfg.mixup}, {cfg.mixup_prob}")
        if not cfg.teacher_model:
            raise DataError("--mixup needs --teacher-model: a blend has no precomputed target")
    if cfg.init_weights and not str(cfg.init_weights).endswith(".keras"):
        raise DataError(f"--init-weights expects a .keras model; received {cfg.init_weights!r}")
    for name in ("data", "pairs", "pairs_images", "init_weights"):
        value = getattr(cfg, name)
        if value and not os.path.exists(value):
            raise DataError(f"{_flag(name)} {value!r} does not exist")


def backbone_kwargs(cfg):
    """``--backbone-options KEY=VALUE ...`` as a dict (JSON values where they parse)."""
    kwargs = {}
    for item in cfg.backbone_options:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise DataError(f"--backbone-options: expected KEY=VALUE; received {item!r}")
        try:
            kwargs[key] = json.loads(value)
        except ValueError:
            kwargs[key] = value
    return kwargs


def to_dict(cfg):
    """JSON-ready dict of a config (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def save_config(cfg, out_dir, program, extra=None):
    """Write ``out_dir/config.json``: program, the resolved options, the command line.

    Written atomically (temporary file + rename) so a kill never leaves half a file.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"program": program, "config": to_dict(cfg), "command_line": command_line()}
    doc.update(extra or {})
    write_json_atomic(out / CONFIG_FILE, doc)
    return out / CONFIG_FILE


def command_line():
    """The running program's command line (see COMMAND_LINE)."""
    return list(COMMAND_LINE) or [os.path.basename(sys.argv[0])] + sys.argv[1:]


def load_config(cls, path):
    """Read a saved ``config.json`` back into ``cls``; unknown keys are an error."""
    doc = json.loads(Path(path).read_text())
    values = doc["config"]
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise DataError(f"{path}: unknown options {unknown} for {cls.__name__}")
    for f in dataclasses.fields(cls):
        if f.metadata["nargs"] and f.name in values:
            values[f.name] = tuple(values[f.name])
    return cls(**values)


def write_json_atomic(path, doc):
    """Write JSON to ``path`` through a temporary file and ``os.replace``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=False, default=_json_default) + "\n")
    os.replace(tmp, path)


def _json_default(obj):
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def apply_backend(name):
    """Select the Keras backend before Keras is imported (``--backend``).

    Raises:
        DataError: Keras is already imported with another backend.
    """
    if not name or name == "auto":
        return
    keras_mod = sys.modules.get("keras")
    if keras_mod is not None:
        current = keras_mod.backend.backend()
        if current != name:
            raise DataError(f"--backend {name}: Keras is already running on {current}; set "
                            f"KERAS_BACKEND={name} in the environment instead")
        return
    os.environ["KERAS_BACKEND"] = name
