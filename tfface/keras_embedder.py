"""Keras face-embedding models behind the same interface as the TFLite embedder."""

import numpy as np

from tfface.core.preprocess import normalize_face
from tfface.model_card import read_card


def _l2(x, eps=1e-12):
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


class KerasEmbedder:
    """Aligned faces -> L2-normalised embeddings with a ``.keras`` model (imports Keras and
    TensorFlow when created)."""

    kind = "keras"

    def __init__(self, path, batch_size=64):
        from tfface.export.convert import load_keras_embedding_model

        self.path = str(path)
        self.card = read_card(path)
        self.model = load_keras_embedding_model(self.path)
        self.input_size = (int(self.model.input_shape[1]), int(self.model.input_shape[2]))
        self.batch_size = batch_size

    def describe(self):
        return {"path": self.path, "kind": self.kind, "input_size": list(self.input_size),
                "parameters": int(self.model.count_params())}

    def __call__(self, faces):
        faces = np.asarray(faces)
        if faces.ndim == 3:
            faces = faces[None]
        out = [np.asarray(self.model.predict_on_batch(normalize_face(faces[i:i + self.batch_size])))
               for i in range(0, len(faces), self.batch_size)]
        return _l2(np.concatenate(out).reshape(len(faces), -1))
