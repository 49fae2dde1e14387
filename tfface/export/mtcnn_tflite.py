"""Convert the mtcnn package's P-, R- and O-nets to TFLite, for TensorFlow-free detection.

Run once; the output ships in ``saved_models/mtcnn`` and is read by
:class:`tflite.mtcnn.TFLiteMTCNNDetector`::

    python -m tfface.export.mtcnn_tflite --out saved_models/mtcnn

The weights are the ones in the mtcnn wheel (``mtcnn/assets/weights/*.lz4``, MIT licence,
originally the Caffe models of Zhang et al. 2016). The graphs are the package's own Keras
networks, traced with a named signature:

- ``pnet``: ``image`` float32 (1, H, W, 3), H and W dynamic (every pyramid level resizes the
  input tensor) -> ``bbox_reg`` (1, H', W', 4), ``prob`` (1, H', W', 2).
- ``rnet``: ``patches`` float32 (N, 24, 24, 3), N dynamic -> ``bbox_reg`` (N, 4),
  ``prob`` (N, 2).
- ``onet``: ``patches`` float32 (N, 48, 48, 3) -> ``bbox_reg`` (N, 4), ``landmarks`` (N, 10)
  as x1..x5, y1..y5 relative to the patch, ``prob`` (N, 2).

Inputs are RGB normalised as ``(x - 127.5) / 128``. Only TFLite builtin ops are used.
"""

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

# name -> (stage class attribute, input name, input shape, output names in the Keras order)
NETS = {
    "pnet": ("StagePNet", "image", (1, None, None, 3), ("bbox_reg", "prob")),
    "rnet": ("StageRNet", "patches", (None, 24, 24, 3), ("bbox_reg", "prob")),
    "onet": ("StageONet", "patches", (None, 48, 48, 3), ("bbox_reg", "landmarks", "prob")),
}
WEIGHT_TYPES = ("float32", "float16")


def _keras_net(name):
    """The mtcnn package's network ``name`` with its shipped weights loaded."""
    from mtcnn import stages

    stage_cls, *_ = NETS[name]
    return getattr(stages, stage_cls)().model


def convert_net(name, weights="float32"):
    """Convert one network to a TFLite flatbuffer.

    Args:
        name: "pnet", "rnet" or "onet".
        weights: "float32", or "float16" to store the weights in half precision (the graph
            still computes in float32; the interpreter dequantizes once at load time).

    Returns:
        bytes of the .tflite file.
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    if name not in NETS:
        raise ValueError(f"unknown network {name!r}; choose from {sorted(NETS)}")
    if weights not in WEIGHT_TYPES:
        raise ValueError(f"unknown weights type {weights!r}; choose from {list(WEIGHT_TYPES)}")
    _, input_name, input_shape, output_names = NETS[name]
    model = _keras_net(name)

    @tf.function(input_signature=[tf.TensorSpec(input_shape, tf.float32, name=input_name)])
    def serve(x):
        outputs = model(x)
        return {out: tf.identity(t, name=out) for out, t in zip(output_names, outputs)}

    # Freeze the Keras variables into constants (the converter would otherwise keep them as
    # resource variables, VAR_HANDLE/READ_VARIABLE ops), then wrap the frozen graph in a
    # function with the named signature ("serving_default", named input and outputs).
    traced = serve.get_concrete_function()
    frozen = convert_variables_to_constants_v2(traced)

    @tf.function(input_signature=[tf.TensorSpec(input_shape, tf.float32, name=input_name)])
    def serving_default(x):
        # The frozen function returns a flat list; restore the names of the traced one.
        outputs = tf.nest.pack_sequence_as(traced.structured_outputs, frozen(x))
        return {out: tf.identity(t, name=out) for out, t in outputs.items()}

    # A trackable object (here an empty one) makes the converter write the signature def.
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [serving_default.get_concrete_function()], tf.Module())
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if weights == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_all(out_dir, weights="float32"):
    """Convert the three networks into ``out_dir`` and write ``model_card.json`` beside them.

    Returns:
        (model card dict, conversion seconds per network and "total").
    """
    from importlib.metadata import version

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files, seconds = {}, {}
    start = time.perf_counter()
    for name, (_, input_name, input_shape, output_names) in NETS.items():
        t0 = time.perf_counter()
        blob = convert_net(name, weights=weights)
        path = out_dir / f"{name}.tflite"
        tmp = path.with_suffix(".tflite.tmp")
        tmp.write_bytes(blob)
        os.replace(tmp, path)
        files[name] = {
            "file": path.name,
            "bytes": path.stat().st_size,
            "sha256": _sha256(path),
            "input": {"name": input_name, "shape": [-1 if d is None else d for d in input_shape]},
            "outputs": list(output_names),
        }
        seconds[name] = time.perf_counter() - t0
    card = {
        "model": "MTCNN (Zhang et al. 2016), P-, R- and O-net",
        "source": f"mtcnn package {version('mtcnn')} "
                  "(mtcnn/assets/weights/{pnet,rnet,onet}.lz4, MIT licence)",
        "command": f"python -m tfface.export.mtcnn_tflite --out {out_dir} --weights {weights}",
        "weights": weights,
        "ops": "TFLITE_BUILTINS",
        "signature": "serving_default",
        "colour_order": "RGB",
        "normalisation": {"mean": 127.5, "std": 128.0},
        "networks": files,
    }
    # Timings are returned, not written: re-running the conversion leaves the folder unchanged.
    card_path = out_dir / "model_card.json"
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    seconds["total"] = time.perf_counter() - start
    return card, seconds


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m tfface.export.mtcnn_tflite",
        description="Convert the mtcnn package's P/R/O-nets to TFLite (builtin ops only).")
    parser.add_argument("--out", default="saved_models/mtcnn", help="output folder")
    parser.add_argument("--weights", choices=WEIGHT_TYPES, default="float32",
                        help="weight storage type (default float32)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        card, seconds = export_all(args.out, weights=args.weights)
    except ImportError as err:
        print(f"mtcnn_tflite: error: conversion needs TensorFlow and the mtcnn package "
              f"(pip install 'tfface[detect]'): {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"mtcnn_tflite: error: cannot write to {args.out}: {err}", file=sys.stderr)
        return 2
    for name, info in card["networks"].items():
        print(f"{info['file']}: {info['bytes']} bytes, sha256 {info['sha256']}, "
              f"{seconds[name]:.2f} s")
    print(f"total {seconds['total']:.2f} s -> {Path(args.out) / 'model_card.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
