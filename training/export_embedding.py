"""Save the trained embedding model (the backbone, without the training head) as ``.keras``
plus a JSON model card.

The card records what a user needs to run the model elsewhere: backbone name and options,
input size, the preprocessing (:func:`tfface.core.preprocess.preprocessing_card`, the one
function every tfface model uses), embedding size, whether outputs are L2-normalised, the
training data, the command line, steps and final metrics.
"""

import time
from pathlib import Path

import keras

from tfface.core.preprocess import preprocessing_card
from training.config import command_line, to_dict, write_json_atomic

MODEL_FILE = "embedding.keras"
CARD_FILE = "embedding.json"


def save_embedding_model(backbone, out_dir, *, program, cfg, data_info, result=None,
                         extra=None):
    """Write ``out_dir/embedding.keras`` and ``out_dir/embedding.json``.

    Args:
        backbone: the embedding ``keras.Model`` (float32 (N, S, S, 3) normalised RGB ->
            (N, D) embeddings).
        out_dir: the run's output folder.
        program: "arcface", "triplet" or "distill".
        cfg: the run's config dataclass.
        data_info: JSON dict describing the training data.
        result: ``training.trainer.FitResult`` or None.
        extra: more card fields (e.g. the teacher mean file of distillation).
    Returns:
        (model path, card path).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / MODEL_FILE
    tmp = out / f".tmp-{MODEL_FILE}"
    backbone = as_float32(backbone)
    backbone.save(str(tmp))
    tmp.replace(path)
    shape = tuple(int(s) for s in backbone.input_shape[1:])
    card = {
        "format": "tfface-embedding-model/1",
        "file": MODEL_FILE,
        "program": program,
        "backbone": cfg.backbone,
        "backbone_config": _plain(backbone.get_config()),
        "input_size": [shape[0], shape[1]],
        "input_shape": list(shape),
        "input_dtype": "float32",
        "preprocessing": preprocessing_card(),
        "embedding_size": int(backbone.output_shape[-1]),
        "normalized": False,
        "similarity": "cosine (L2-normalise the outputs first)",
        "data": data_info,
        "command_line": command_line(),
        "config": to_dict(cfg),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if result is not None:
        card.update({"steps": result.step, "epochs": result.epochs,
                     "final_metrics": result.metrics(),
                     "train_seconds": result.seconds})
    init = getattr(cfg, "init_weights", "")
    if init:
        card["initialized_from"] = initialization_record(init)
        card["total_train_seconds"] = round(
            card.get("train_seconds", 0.0)
            + card["initialized_from"].get("total_train_seconds", 0.0), 2)
    card.update(extra or {})
    write_json_atomic(out / CARD_FILE, card)
    return path, out / CARD_FILE


LINEAGE_KEYS = ("program", "command_line", "data", "steps", "epochs", "train_seconds",
                "final_metrics", "saved_at", "initialized_from")


def initialization_record(model_path):
    """What a run that started from ``model_path`` (``--init-weights``) started from: that
    model's training (command line, data, steps, wall time, and its own start, recursively)
    from its card, so the final card tells the whole recipe and its total training time."""
    from tfface.model_card import read_card

    card = read_card(model_path)
    record = {"file": str(Path(model_path).resolve())}
    record.update({k: card[k] for k in LINEAGE_KEYS if k in card})
    earlier = card.get("initialized_from", {}).get("total_train_seconds", 0.0)
    record["total_train_seconds"] = round(card.get("train_seconds", 0.0) + earlier, 2)
    if not card:
        record["note"] = "no model card next to the file: its training is unknown"
    return record


def as_float32(model):
    """The model itself when it computes in float32, else a float32 copy of it (a mixed
    precision run saves a model that TFLite conversion and CPU inference take as is)."""
    if keras.mixed_precision.dtype_policy().name == "float32" and all(
            layer.dtype_policy.name == "float32" for layer in model.layers):
        return model
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        clone = model.__class__.from_config(model.get_config())
    finally:
        keras.mixed_precision.set_global_policy(previous)
    clone.set_weights(model.get_weights())
    return clone


def _plain(obj):
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)
