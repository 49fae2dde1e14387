"""TFLite face-embedding models in the TensorFlow-free runtime."""

import numpy as np

from tfface.core.preprocess import normalize_face
from tfface.errors import ModelError
from tfface.model_card import read_card
from tflite.interpreter import TFLiteModel


def l2_normalize(x, eps=1e-12):
    """Rows scaled to unit length. (N, D) -> float32 (N, D)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


class TFLiteEmbedder:
    """Aligned faces -> L2-normalised embeddings with a ``.tflite`` model.

    float32/float16 models take ``normalize_face`` output; int8/uint8 models get it quantised
    with the input tensor's parameters (the same numbers the model card records), so callers
    always pass uint8 RGB crops.

    Args:
        path: ``.tflite`` file (its ``.json`` card, when present, is read too).
        num_threads: interpreter threads; None lets the runtime choose.
        batch_size: faces per invocation.
    """

    kind = "tflite"

    def __init__(self, path, num_threads=None, batch_size=32):
        self.path = str(path)
        self.card = read_card(path)
        self.model = TFLiteModel(path, num_threads=num_threads)
        names = self.model.input_names
        if len(names) != 1:
            raise ModelError(f"{path}: expected one image input; found {names}")
        self.input_name = names[0]
        outs = self.model.output_names
        self.output_name = "embedding" if "embedding" in outs else outs[0]
        details = self.model.input_details[self.input_name]
        shape = list(details.get("shape_signature", details["shape"]))
        if len(shape) != 4 or shape[-1] != 3:
            raise ModelError(f"{path}: expected image input (N, H, W, 3); found {shape}")
        self.input_size = (int(shape[1]), int(shape[2]))
        self.input_dtype = np.dtype(details["dtype"]).name
        self.dynamic_batch = int(shape[0]) == -1
        self.batch_size = batch_size if self.dynamic_batch else 1
        self.num_threads = num_threads

    def describe(self):
        return {"path": self.path, "kind": self.kind, "input_size": list(self.input_size),
                "input_dtype": self.input_dtype, "num_threads": self.num_threads,
                "variant": self.card.get("variant")}

    def __call__(self, faces):
        """uint8 RGB (N, H, W, 3) aligned faces -> float32 (N, D) unit-length embeddings."""
        faces = np.asarray(faces)
        if faces.ndim == 3:
            faces = faces[None]
        if faces.shape[1:3] != self.input_size:
            raise ModelError(f"{self.path}: faces must be {self.input_size[0]}x"
                             f"{self.input_size[1]} crops; received {faces.shape[1:3]}")
        out = []
        for i in range(0, len(faces), self.batch_size):
            x = normalize_face(faces[i:i + self.batch_size])
            out.append(self.model(**{self.input_name: x})[self.output_name])
        return l2_normalize(np.concatenate(out).reshape(len(faces), -1))
