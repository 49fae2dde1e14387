"""Load and run TFLite models without TensorFlow.

The interpreter comes from the first of these that is installed:

1. ``ai_edge_litert`` (the ``lite`` extra; Google's successor of tflite-runtime),
2. ``tflite_runtime`` (older edge installs, e.g. a Raspberry Pi image),
3. ``tf.lite`` of TensorFlow (last resort; imported inside :func:`interpreter_class` only, so
   importing this module never loads TensorFlow).

:class:`TFLiteModel` wraps one model: named signature, dynamic input shapes, and transparent
quantization of int8/uint8 inputs and outputs from each tensor's quantization parameters.
"""

import contextlib
import importlib
import numbers
import os
from pathlib import Path

import numpy as np

from tfface.errors import ModelError
from tfface.quiet import silenced_stderr

# (module to import, dotted attribute path of the Interpreter class), in order of preference.
# TensorFlow's public ``tf.lite`` is an attribute of the ``tensorflow`` module, not an
# importable ``tensorflow.lite`` module.
BACKENDS = (
    ("ai_edge_litert.interpreter", "Interpreter"),
    ("tflite_runtime.interpreter", "Interpreter"),
    ("tensorflow", "lite.Interpreter"),
)
# Bytes 4..8 of every TFLite flatbuffer (the schema's file_identifier).
TFLITE_IDENTIFIER = b"TFL3"
QUANTIZED_DTYPES = (np.int8, np.uint8, np.int16)


def interpreter_class(backends=BACKENDS):
    """The first importable TFLite Interpreter class and the name of its module.

    Returns:
        (Interpreter class, module name).

    Raises:
        ModelError: none of ``backends`` is installed.
    """
    for module_name, attr in backends:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        cls = module
        for part in attr.split("."):
            cls = getattr(cls, part, None)
        if cls is not None:
            return cls, module_name
    raise ModelError(
        "no TFLite interpreter found (tried ai-edge-litert, tflite-runtime, tensorflow); "
        "install one: pip install 'tfface[lite]'")


def check_tflite_file(model_path):
    """Raise ModelError unless ``model_path`` is an existing TFLite flatbuffer.

    Returns:
        the path as a :class:`pathlib.Path`.
    """
    path = Path(os.fspath(model_path))
    if not path.is_file():
        raise ModelError(f"TFLite model not found: {path}")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if len(head) < 8 or head[4:8] != TFLITE_IDENTIFIER:
        raise ModelError(
            f"{path}: not a TFLite model (no {TFLITE_IDENTIFIER.decode()} flatbuffer "
            "identifier); expected a .tflite file")
    return path


def load_interpreter(model_path, num_threads=None, backends=BACKENDS):
    """Create a TFLite interpreter for a model file.

    Tensors are allocated when every input has a static shape; a model with dynamic
    dimensions (``-1`` in ``shape_signature``) is allocated once its inputs are resized.

    Args:
        model_path: path to a ``.tflite`` file.
        num_threads: CPU threads for the interpreter's kernels; None lets it choose.
        backends: (module, attribute) pairs tried in order (see :data:`BACKENDS`).

    Returns:
        the Interpreter instance (``ai_edge_litert``, ``tflite_runtime`` or ``tf.lite``).

    Raises:
        ModelError: no interpreter installed, missing file, not a TFLite model, or a model
            the interpreter rejects (e.g. it needs ops this runtime lacks).
    """
    if num_threads is not None and (isinstance(num_threads, bool)
                                    or not isinstance(num_threads, numbers.Integral)
                                    or num_threads < 1):
        raise ModelError(f"num_threads must be a positive integer or None; "
                         f"received {num_threads!r}")
    path = check_tflite_file(model_path)
    cls, _ = interpreter_class(backends)
    try:
        interpreter = cls(model_path=str(path),
                          num_threads=None if num_threads is None else int(num_threads))
        if all((np.asarray(d.get("shape_signature", d["shape"])) >= 0).all()
               for d in interpreter.get_input_details()):
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as err:
        raise ModelError(f"{path}: the TFLite interpreter cannot load it: "
                         f"{_first_line(err)}") from err
    return interpreter


def _first_line(err):
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def quantize(values, details):
    """Float values to the integer type of a quantized tensor (round, then clip).

    Args:
        values: array of real values.
        details: a tensor-details dict (``dtype``, ``quantization`` (scale, zero_point)).

    Returns:
        array of ``details["dtype"]``.
    """
    dtype = np.dtype(details["dtype"])
    scale, zero_point = details["quantization"]
    if not scale:
        raise ModelError(f"tensor {details.get('name')!r} is {dtype} without quantization "
                         "parameters; pass values of that dtype")
    info = np.iinfo(dtype)
    q = np.round(np.asarray(values, dtype=np.float64) / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(values, details):
    """Integer values of a quantized tensor to float32 ``(q - zero_point) * scale``."""
    scale, zero_point = details["quantization"]
    if not scale:
        return np.asarray(values)
    return ((np.asarray(values, dtype=np.float32) - zero_point) * scale).astype(np.float32)


def _is_quantized(details):
    return np.dtype(details["dtype"]) in [np.dtype(t) for t in QUANTIZED_DTYPES]


class TFLiteModel:
    """A TFLite model behind a call that takes and returns numpy arrays by name.

    Inputs whose shape differs from the allocated one are resized (the dynamic dimensions of
    ``shape_signature`` only); float values given for int8/uint8 inputs are quantized, and
    int8/uint8 outputs are dequantized to float32 (``dequantize=False`` keeps them raw).

    Args:
        model_path: path to a ``.tflite`` file.
        num_threads: interpreter CPU threads; None lets the runtime choose.
        signature: signature key to run; default "serving_default" when present, else the
            first signature, else the raw input/output tensors.
        backends: interpreter modules tried in order (see :data:`BACKENDS`).

    Raises:
        ModelError: see :func:`load_interpreter`; also an unknown signature.
    """

    def __init__(self, model_path, num_threads=None, signature=None, backends=BACKENDS):
        self.path = Path(os.fspath(model_path))
        self.num_threads = num_threads
        self.interpreter = load_interpreter(self.path, num_threads=num_threads,
                                            backends=backends)
        signatures = self.interpreter.get_signature_list()
        if signature is None and signatures:
            signature = "serving_default" if "serving_default" in signatures else \
                min(signatures)
        if signature is not None and signature not in signatures:
            raise ModelError(f"{self.path}: no signature {signature!r}; "
                             f"available: {sorted(signatures)}")
        self.signature = signature
        self._runner = None
        self._allocated = False
        self._seen_shapes = set()
        if signature is not None:
            self._runner = self.interpreter.get_signature_runner(signature)
            self._inputs = dict(self._runner.get_input_details())
            self._outputs = dict(self._runner.get_output_details())
        else:
            self._inputs = {d["name"]: d for d in self.interpreter.get_input_details()}
            self._outputs = {d["name"]: d for d in self.interpreter.get_output_details()}

    # --- description --------------------------------------------------------------------------
    @property
    def input_names(self):
        return list(self._inputs)

    @property
    def output_names(self):
        return list(self._outputs)

    @property
    def input_details(self):
        """name -> details dict (``shape``, ``shape_signature``, ``dtype``, ``quantization``)."""
        return dict(self._inputs)

    @property
    def output_details(self):
        return dict(self._outputs)

    def __repr__(self):
        return (f"TFLiteModel({str(self.path)!r}, signature={self.signature!r}, "
                f"inputs={self.input_names}, outputs={self.output_names})")

    # --- running ------------------------------------------------------------------------------
    def _prepare(self, name, value):
        details = self._inputs[name]
        dtype = np.dtype(details["dtype"])
        value = np.asarray(value)
        if _is_quantized(details) and value.dtype != dtype:
            value = quantize(value, details)
        elif value.dtype != dtype:
            value = value.astype(dtype)
        signature = np.asarray(details.get("shape_signature", details["shape"]))
        if value.ndim != len(signature) or any(
                s != -1 and s != v for s, v in zip(signature, value.shape)):
            wanted = tuple(int(s) if s != -1 else None for s in signature)
            raise ModelError(f"{self.path.name}: input {name!r} expects shape {wanted}; "
                             f"received {value.shape}")
        return np.ascontiguousarray(value)

    def __call__(self, *args, dequantize_outputs=True, **inputs):
        """Run the model.

        Args:
            *args: input arrays in the order of :attr:`input_names` (or use keywords).
            dequantize_outputs: convert int8/uint8 outputs to float32 with their parameters.
            **inputs: input arrays by name.

        Returns:
            dict output name -> numpy array (copies, safe to keep).
        """
        if args:
            if len(args) > len(self._inputs):
                raise ModelError(f"{self.path.name}: {len(self._inputs)} inputs expected; "
                                 f"received {len(args)}")
            inputs = {**dict(zip(self.input_names, args)), **inputs}
        unknown = set(inputs) - set(self._inputs)
        missing = set(self._inputs) - set(inputs)
        if unknown or missing:
            raise ModelError(f"{self.path.name}: inputs are {self.input_names}; "
                             f"received {sorted(inputs)}")
        feed = {name: self._prepare(name, value) for name, value in inputs.items()}
        shapes = tuple((name, value.shape) for name, value in sorted(feed.items()))
        # The runtime prints "INFO: Created TensorFlow Lite XNNPACK delegate" to stderr when it
        # (re)allocates for new input shapes; keep CLI output to results and real errors
        # (errors still arrive as exceptions with their message).
        quiet = silenced_stderr() if shapes not in self._seen_shapes else contextlib.nullcontext()
        try:
            with quiet:
                if self._runner is not None:
                    raw = self._runner(**feed)
                else:
                    raw = self._invoke_tensors(feed)
            self._seen_shapes.add(shapes)
        except (ValueError, RuntimeError) as err:
            shapes = {name: value.shape for name, value in feed.items()}
            raise ModelError(f"{self.path.name}: inference failed for inputs {shapes}: "
                             f"{_first_line(err)}") from err
        out = {}
        for name, value in raw.items():
            details = self._outputs[name]
            if dequantize_outputs and _is_quantized(details):
                value = dequantize(value, details)
            out[name] = np.array(value, copy=True)
        return out

    def _invoke_tensors(self, feed):
        interp = self.interpreter
        resized = False
        for name, value in feed.items():
            details = self._inputs[name]
            if tuple(details["shape"]) != value.shape or not self._allocated:
                interp.resize_tensor_input(details["index"], list(value.shape), strict=True)
                resized = True
        if resized:
            interp.allocate_tensors()
            self._allocated = True
            self._inputs = {d["name"]: d for d in interp.get_input_details()}
            self._outputs = {d["name"]: d for d in interp.get_output_details()}
        for name, value in feed.items():
            interp.set_tensor(self._inputs[name]["index"], value)
        interp.invoke()
        return {name: interp.get_tensor(d["index"]) for name, d in self._outputs.items()}
