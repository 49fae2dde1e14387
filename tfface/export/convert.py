"""Convert a Keras embedding model to TFLite: float32, float16, dynamic-range int8, full int8.

Every variant gets one named signature, ``serving_default``, with input ``image`` (float32
``(N, H, W, 3)`` normalised by :func:`tfface.core.preprocess.normalize_face`, or its int8/uint8
quantisation for full-int8 models) and output ``embedding`` (float32, L2-normalised), so an app
calls it by name without guessing tensor indices.
"""

import os
import tempfile

import numpy as np

from tfface.core.preprocess import normalize_face
from tfface.errors import ModelError

VARIANTS = ("float32", "float16", "dynamic", "int8")
SIGNATURE = "serving_default"
INPUT_NAME = "image"
OUTPUT_NAME = "embedding"


def load_keras_embedding_model(path):
    """Load a ``.keras`` embedding model (the project's custom layers registered)."""
    from tfface.quiet import import_tensorflow

    import_tensorflow()
    import keras

    try:
        import training.models  # noqa: F401  (registers the project's layers)
    except ImportError:
        pass
    if not os.path.isfile(path):
        raise ModelError(f"model file not found: {path}")
    if not str(path).endswith(".keras"):
        raise ModelError(f"{path}: expected a .keras model")
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as err:
        raise ModelError(f"cannot load Keras model {path}: {str(err).splitlines()[0]}") from err
    shape = model.input_shape
    if isinstance(shape, list):
        shape = shape[0]
    if len(shape) != 4 or shape[-1] != 3 or not shape[1] or not shape[2]:
        raise ModelError(f"{path}: expected an image model with input (N, H, W, 3), "
                         f"got {shape}")
    return model


def normalized_model(model):
    """The embedding model with an L2 normalisation on top (fused by TFLite into
    L2_NORMALIZATION), input named ``image`` and output named ``embedding``."""
    import keras

    from training.models.layers import L2Normalize

    h, w = int(model.input_shape[1]), int(model.input_shape[2])
    inp = keras.Input((h, w, 3), name=INPUT_NAME)
    out = L2Normalize(name=OUTPUT_NAME)(model(inp))
    return keras.Model(inp, out, name=f"{model.name}_normalized")


def _saved_model(model, directory):
    """Write a SavedModel whose one signature maps ``image`` -> {``embedding``}.

    Keras's ExportArchive tracks the variables so the converter freezes them (a plain
    tf.function over a Keras 3 model leaves them as resource reads that TFLite cannot run).
    """
    import keras
    import tensorflow as tf

    h, w = int(model.input_shape[1]), int(model.input_shape[2])
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        SIGNATURE, lambda image: {OUTPUT_NAME: model(image, training=False)},
        input_signature=[tf.TensorSpec([None, h, w, 3], tf.float32, name=INPUT_NAME)])
    archive.write_out(directory, verbose=False)


def convert(model, variant, representative=None, int8_input="int8"):
    """TFLite flatbuffer bytes of ``model`` (already L2-normalised, see normalized_model).

    Args:
        model: keras.Model, float32 normalised RGB in, embedding out.
        variant: "float32", "float16", "dynamic" (int8 weights, float activations) or "int8"
            (full integer: int8 weights and activations, integer input).
        representative: uint8 RGB aligned crops (N, H, W, 3) for int8 calibration.
        int8_input: "int8" or "uint8" input type of the full-int8 model (output stays float32).
    """
    import tensorflow as tf

    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {list(VARIANTS)}")
    with tempfile.TemporaryDirectory(prefix="tfface-export-") as tmp:
        _saved_model(model, tmp)
        conv = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=[SIGNATURE])
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if variant == "float16":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.target_spec.supported_types = [tf.float16]
        elif variant == "dynamic":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
        elif variant == "int8":
            if representative is None or len(representative) == 0:
                raise ValueError("full-int8 export needs representative aligned faces")
            if int8_input not in ("int8", "uint8"):
                raise ValueError(f"int8_input must be 'int8' or 'uint8'; got {int8_input!r}")
            data = normalize_face(np.asarray(representative))

            def gen():
                for x in data:
                    yield {INPUT_NAME: x[None]}

            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = gen
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = tf.int8 if int8_input == "int8" else tf.uint8
            conv.inference_output_type = tf.float32
        try:
            return conv.convert()
        except Exception as err:
            raise ModelError(f"TFLite conversion ({variant}) failed: "
                             f"{str(err).strip().splitlines()[-1]}") from err


def keras_embeddings(model, crops, batch_size=64):
    """L2-normalised embeddings from a normalised Keras model. uint8 (N,H,W,3) -> (N, D)."""
    out = []
    for i in range(0, len(crops), batch_size):
        out.append(np.asarray(model.predict_on_batch(normalize_face(crops[i:i + batch_size]))))
    return np.concatenate(out).astype(np.float32)
