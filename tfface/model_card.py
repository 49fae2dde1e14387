"""JSON model cards: what an app needs to run a model file correctly.

A card sits next to its model (``model.tflite`` -> ``model.json``) and records the input size,
colour order, normalisation (or quantisation), embedding size, the verification threshold and
where it was calibrated. Both the Keras and the TFLite side read it through this module.
"""

import hashlib
import json
import os
from pathlib import Path

from tfface.errors import ModelError

CARD_FORMAT = "tfface-model-card/1"


def card_path(model_path):
    """``x.tflite`` / ``x.keras`` -> ``x.json``."""
    p = Path(os.fspath(model_path))
    return p.with_suffix(".json")


def read_card(model_path, required=False):
    """The card next to a model file as a dict; {} when absent (unless ``required``)."""
    path = card_path(model_path)
    if not path.is_file():
        if required:
            raise ModelError(f"model card not found: {path}")
        return {}
    try:
        with open(path, encoding="utf-8") as fh:
            card = json.load(fh)
    except (OSError, json.JSONDecodeError) as err:
        raise ModelError(f"cannot read model card {path}: {err}") from err
    if not isinstance(card, dict):
        raise ModelError(f"model card {path} is not a JSON object")
    return card


def write_json_atomic(path, data):
    """Write JSON via a temp file and rename (a reader never sees half a file)."""
    path = Path(os.fspath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=False)
        fh.write("\n")
    os.replace(tmp, path)
    return path


def sha256_file(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def model_id(model_path):
    """A stable identity of a model's weights (for facebanks: never mix embeddings of two
    models). The card's ``model_id`` when present, else the file's sha256 prefix."""
    card = read_card(model_path)
    if card.get("model_id"):
        return str(card["model_id"])
    return "sha256:" + sha256_file(model_path)[:16]


def card_threshold(card, default=None):
    """The calibrated cosine-similarity threshold of a card, or ``default``."""
    thr = card.get("threshold")
    if isinstance(thr, dict):
        thr = thr.get("cosine")
    return float(thr) if thr is not None else default


def card_template(card):
    """The 5x2 landmark template (crop pixels) a model expects, or None for the ArcFace
    template. Cards store it as ``alignment.landmarks`` or ``alignment.template`` (a list)."""
    alignment = card.get("alignment") or {}
    points = alignment.get("landmarks")
    if points is None and isinstance(alignment.get("template"), list):
        points = alignment["template"]
    return points
