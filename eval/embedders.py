"""Turn aligned faces into embeddings with a ``.keras`` model, a ``.tflite`` model, or look them
up in a ``.npz`` of precomputed embeddings.

Every model sees pixels through :func:`tfface.core.preprocess.normalize_face`. With flip
augmentation the embedding of a face is the sum of the raw embeddings of the crop and of its
mirror image; the result is L2-normalised (scores are then cosine similarities).
"""

import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tfface.core.preprocess import normalize_face
from tfface.errors import DataError, ModelError

MODEL_KINDS = {".keras": "keras", ".tflite": "tflite", ".npz": "npz"}
DEFAULT_SIZE = (112, 112)


def model_kind(path):
    """"keras", "tflite" or "npz" from the file name; ModelError for anything else."""
    ext = Path(path).suffix.lower()
    if ext not in MODEL_KINDS:
        raise ModelError(f"unknown model file type {ext or '(none)'!r} for {path}; "
                         f"expected one of {sorted(MODEL_KINDS)}")
    if not os.path.isfile(path):
        raise ModelError(f"model file not found: {path}")
    return MODEL_KINDS[ext]


def l2_normalize(x, eps=1e-12):
    """Rows scaled to unit length. float (N, D) -> float32 (N, D)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


class KerasEmbedder:
    """A Keras 3 model file: uint8 RGB faces (N, h, w, 3) -> float32 (N, D) raw embeddings."""

    kind = "keras"

    def __init__(self, path):
        import keras

        try:  # register the project's custom layers so their models load
            import training.models  # noqa: F401
        except ImportError:
            pass
        try:
            self.model = keras.saving.load_model(path, compile=False)
        except Exception as err:  # Keras raises many types for a bad file
            raise ModelError(f"cannot load Keras model {path}: {err}") from err
        shape = self.model.input_shape
        if isinstance(shape, list):
            shape = shape[0]
        if len(shape) != 4 or shape[-1] != 3:
            raise ModelError(f"{path}: expected an image model with input (N, h, w, 3); "
                             f"its input shape is {shape}")
        self.input_size = (shape[1] or DEFAULT_SIZE[0], shape[2] or DEFAULT_SIZE[1])
        self.path = os.fspath(path)

    def describe(self):
        return {"path": self.path, "kind": self.kind, "name": self.model.name,
                "input_size": list(self.input_size),
                "parameters": int(self.model.count_params())}

    def __call__(self, faces):
        out = self.model.predict_on_batch(normalize_face(faces))
        if isinstance(out, dict):
            out = out.get("embedding", next(iter(out.values())))
        if isinstance(out, (list, tuple)):
            out = out[0]
        return np.asarray(out, dtype=np.float32).reshape(len(faces), -1)


class TFLiteEmbedder:
    """A TFLite model through the runtime's :class:`tflite.interpreter.TFLiteModel` (named
    signature; int8/uint8 inputs quantised with the input tensor's scale and zero point, and
    outputs dequantised). Returns raw embeddings, like :class:`KerasEmbedder`, so flip sums
    the same quantities for both. Models with a fixed batch of 1 run face by face."""

    kind = "tflite"

    def __init__(self, path, num_threads=None):
        from tflite.interpreter import TFLiteModel

        self.path = os.fspath(path)
        self.num_threads = num_threads
        self.model = TFLiteModel(path, num_threads=num_threads)
        names = self.model.input_names
        if len(names) != 1:
            raise ModelError(f"{path}: expected one image input; found {names}")
        self.input_name = names[0]
        outs = self.model.output_names
        self.output_name = "embedding" if "embedding" in outs else outs[0]
        details = self.model.input_details[self.input_name]
        shape = [int(v) for v in details.get("shape_signature", details["shape"])]
        if len(shape) != 4 or shape[-1] != 3 or min(shape[1:3]) < 1:
            raise ModelError(f"{path}: expected an image input (N, h, w, 3); found {shape}")
        self.input_size = (shape[1], shape[2])
        self.input_dtype = np.dtype(details["dtype"])
        self.quantization = tuple(details.get("quantization", (0.0, 0)))
        self.dynamic_batch = shape[0] == -1

    def describe(self):
        scale, zero = self.quantization
        return {"path": self.path, "kind": self.kind, "input_size": list(self.input_size),
                "input_dtype": self.input_dtype.name,
                "input_quantization": [float(scale), int(zero)],
                "output": self.output_name, "num_threads": self.num_threads}

    def __call__(self, faces):
        x = normalize_face(faces)
        step = len(x) if self.dynamic_batch else 1
        out = [self.model(**{self.input_name: x[i:i + step]})[self.output_name]
               for i in range(0, len(x), step)]
        return np.concatenate(out).astype(np.float32).reshape(len(x), -1)


def load_embedder(path, num_threads=None):
    """A :class:`KerasEmbedder` or :class:`TFLiteEmbedder` for a model file."""
    kind = model_kind(path)
    if kind == "keras":
        return KerasEmbedder(path)
    if kind == "tflite":
        return TFLiteEmbedder(path, num_threads)
    raise ModelError(f"{path} holds embeddings, not a model")


def embed_faces(embedder, faces, batch_size=64, flip=False, progress=True):
    """Raw embeddings of aligned faces, batched.

    Args:
        embedder: callable uint8 (B, h, w, 3) -> float32 (B, D).
        faces: uint8 RGB (N, h, w, 3).
        flip: also embed the mirrored faces.
    Returns:
        (emb float32 (N, D), emb_flip float32 (N, D) or None), not normalised.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; received {batch_size}")
    embs, flips = [], []
    bar = tqdm(total=len(faces), desc="embed", unit="face", disable=not progress,
               dynamic_ncols=True)
    for i in range(0, len(faces), batch_size):
        batch = faces[i:i + batch_size]
        embs.append(embedder(batch))
        if flip:
            flips.append(embedder(np.ascontiguousarray(batch[:, :, ::-1])))
        bar.update(len(batch))
    bar.close()
    emb = np.concatenate(embs).astype(np.float32)
    return emb, (np.concatenate(flips).astype(np.float32) if flip else None)


def combine(emb, emb_flip=None):
    """Final embeddings: ``l2_normalize(emb + emb_flip)`` (flip) or ``l2_normalize(emb)``."""
    return l2_normalize(emb if emb_flip is None else emb + emb_flip)


def _tail(path, n=2):
    return "/".join(Path(path).parts[-n:])


def lookup_embeddings(npz_path, keys, images_root=None, flip=False, with_status=False):
    """Precomputed embeddings for ``keys`` from a ``.npz`` with ``path`` (str (M,)), ``emb``
    (float (M, D)) and, for flip, ``emb_flip`` — the format ``--save-embeddings`` writes and the
    teacher files use. A key matches a stored path exactly, relative to ``images_root``, or by
    its last two path parts (``Name/Name_0001.jpg``).

    With ``with_status``, also the alignment status of each image: the stored ``status``
    (written by ``--save-embeddings``), else from a ``detected`` flag (teacher files: 1
    "detected", 0 "no_face"), else None.

    Returns:
        (emb float32 (N, D), emb_flip or None[, statuses list of N str or None]).
    Raises:
        DataError: missing arrays, or images of the pairs without an embedding.
    """
    try:
        with np.load(npz_path, allow_pickle=False) as z:
            if "path" not in z or "emb" not in z:
                raise DataError(f"{npz_path}: expected arrays 'path' and 'emb'; "
                                f"found {sorted(z.files)}")
            stored = [str(p) for p in z["path"]]
            emb = np.asarray(z["emb"], dtype=np.float32)
            emb_flip = np.asarray(z["emb_flip"], dtype=np.float32) if "emb_flip" in z else None
            status = None
            if "status" in z:
                status = [str(s) for s in z["status"]]
            elif "detected" in z:
                status = ["detected" if d else "no_face" for d in z["detected"]]
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read embeddings {npz_path}: {err}") from err
    if emb.ndim != 2 or emb.shape[0] != len(stored):
        raise DataError(f"{npz_path}: 'emb' has shape {emb.shape} for {len(stored)} paths")
    if flip and emb_flip is None:
        raise DataError(f"{npz_path} has no 'emb_flip'; run without --flip")
    exact = {p: i for i, p in enumerate(stored)}
    tails = {_tail(p): i for i, p in enumerate(stored)}
    idx, missing = [], []
    for k in keys:
        i = exact.get(k)
        if i is None and images_root is not None and not k.startswith("bin:"):
            i = exact.get(os.path.relpath(k, images_root))
        if i is None:
            i = tails.get(_tail(k))
        if i is None:
            missing.append(k)
        idx.append(i)
    if missing:
        raise DataError(f"{npz_path}: no embedding for {len(missing)} of {len(keys)} images "
                        f"(first: {missing[0]})")
    idx = np.asarray(idx, dtype=np.int64)
    out = emb[idx], (emb_flip[idx] if flip else None)
    if with_status:
        out += ([status[i] for i in idx] if status is not None else None,)
    return out
