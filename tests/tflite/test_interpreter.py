"""tflite.interpreter: loader fallbacks, errors, signatures, dynamic shapes, quantization."""

from pathlib import Path

import numpy as np
import pytest

from tfface.errors import ModelError
from tflite.interpreter import (
    BACKENDS,
    TFLiteModel,
    dequantize,
    interpreter_class,
    load_interpreter,
    quantize,
)

ROOT = Path(__file__).resolve().parents[2]
MTCNN_DIR = ROOT / "saved_models" / "mtcnn"


def _one_line(err):
    message = str(err.value)
    assert message and "\n" not in message
    return message


# --- errors ------------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    with pytest.raises(ModelError) as err:
        load_interpreter(tmp_path / "nope.tflite")
    message = _one_line(err)
    assert "not found" in message and "nope.tflite" in message


@pytest.mark.parametrize("content", [b"", b"hello, not a model at all", b"\xff\xd8\xff\xe0" * 64])
def test_not_a_tflite_file(tmp_path, content):
    path = tmp_path / "model.tflite"
    path.write_bytes(content)
    with pytest.raises(ModelError) as err:
        TFLiteModel(path)
    assert "not a TFLite model" in _one_line(err)


def test_truncated_flatbuffer(tmp_path):
    path = tmp_path / "cut.tflite"
    path.write_bytes((MTCNN_DIR / "onet.tflite").read_bytes()[:300])
    with pytest.raises(ModelError) as err:
        TFLiteModel(path)
    assert "cut.tflite" in _one_line(err)


def test_directory_is_not_a_model(tmp_path):
    with pytest.raises(ModelError):
        load_interpreter(tmp_path)


def test_no_interpreter_installed():
    with pytest.raises(ModelError) as err:
        interpreter_class(backends=(("no_such_module_xyz.interpreter", "Interpreter"),))
    assert "pip install" in _one_line(err)


def test_fallback_skips_missing_backends():
    cls, module = interpreter_class(
        backends=(("no_such_module_xyz.interpreter", "Interpreter"),) + BACKENDS)
    assert module in {m for m, _ in BACKENDS}
    interp = load_interpreter(MTCNN_DIR / "rnet.tflite", backends=(
        ("no_such_module_xyz.interpreter", "Interpreter"),) + BACKENDS)
    assert isinstance(interp, cls)


@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning")
def test_tensorflow_lite_fallback_runs_dynamic_shapes():
    """The last-resort backend (tf.lite) behaves like ai-edge-litert behind TFLiteModel."""
    pytest.importorskip("tensorflow")
    x = np.random.default_rng(9).uniform(-1, 1, (1, 40, 30, 3)).astype(np.float32)
    tf_model = TFLiteModel(MTCNN_DIR / "pnet.tflite", backends=BACKENDS[2:])
    assert type(tf_model.interpreter).__module__.startswith("tensorflow")
    reference = TFLiteModel(MTCNN_DIR / "pnet.tflite")(x)
    got = tf_model(x)
    np.testing.assert_allclose(got["prob"], reference["prob"], atol=1e-5)


@pytest.mark.parametrize("threads", [0, -2, True, 2.5, "2"])
def test_bad_num_threads(threads):
    with pytest.raises(ModelError):
        load_interpreter(MTCNN_DIR / "rnet.tflite", num_threads=threads)


def test_unknown_signature():
    with pytest.raises(ModelError, match="no signature"):
        TFLiteModel(MTCNN_DIR / "rnet.tflite", signature="predict")


# --- signatures and dynamic shapes -------------------------------------------------------------
def test_signature_names_and_details():
    model = TFLiteModel(MTCNN_DIR / "onet.tflite", num_threads=1)
    assert model.signature == "serving_default"
    assert model.input_names == ["patches"]
    assert sorted(model.output_names) == ["bbox_reg", "landmarks", "prob"]
    assert list(model.input_details["patches"]["shape_signature"]) == [-1, 48, 48, 3]


@pytest.mark.parametrize("height,width", [(12, 12), (31, 17), (100, 80)])
def test_pnet_dynamic_input_size(height, width):
    """PNet is fully convolutional: 3x3 conv, 2x2/2 pool (same), two 3x3 convs."""
    model = TFLiteModel(MTCNN_DIR / "pnet.tflite", num_threads=1)
    x = np.random.default_rng(0).uniform(-1, 1, (1, height, width, 3)).astype(np.float32)
    out = model(x)
    expect = (1, -(-(height - 2) // 2) - 4, -(-(width - 2) // 2) - 4)
    assert out["bbox_reg"].shape == expect + (4,)
    assert out["prob"].shape == expect + (2,)
    np.testing.assert_allclose(out["prob"].sum(-1), 1.0, atol=1e-5)


def test_batch_size_changes_between_calls():
    model = TFLiteModel(MTCNN_DIR / "rnet.tflite", num_threads=1)
    x = np.random.default_rng(1).uniform(-1, 1, (5, 24, 24, 3)).astype(np.float32)
    five = model(patches=x)
    one = model(patches=x[2:3])
    assert five["prob"].shape == (5, 2) and one["prob"].shape == (1, 2)
    np.testing.assert_allclose(one["prob"][0], five["prob"][2], atol=1e-6)


def test_runtime_failure_is_a_model_error():
    """A PNet input smaller than its 12x12 window has no valid output shape."""
    model = TFLiteModel(MTCNN_DIR / "pnet.tflite")
    with pytest.raises(ModelError) as err:
        model(np.zeros((1, 5, 5, 3), np.float32))
    assert "inference failed" in _one_line(err)


def test_wrong_static_shape_is_a_model_error():
    model = TFLiteModel(MTCNN_DIR / "rnet.tflite")
    with pytest.raises(ModelError, match=r"expects shape \(None, 24, 24, 3\)"):
        model(np.zeros((2, 48, 48, 3), np.float32))
    with pytest.raises(ModelError, match="inputs are"):
        model(image=np.zeros((2, 24, 24, 3), np.float32))


@pytest.mark.parametrize("name", ["pnet", "rnet", "onet"])
def test_nets_match_the_mtcnn_package(name):
    """The converted nets compute what the package's Keras nets compute."""
    pytest.importorskip("mtcnn")
    from tfface.export.mtcnn_tflite import NETS, _keras_net

    keras_net = _keras_net(name)
    _, _, shape, output_names = NETS[name]
    shape = tuple(37 if d is None else d for d in shape[1:])
    x = np.random.default_rng(2).uniform(-1, 1, (3 if name != "pnet" else 1,) + shape)
    x = x.astype(np.float32)
    got = TFLiteModel(MTCNN_DIR / f"{name}.tflite", num_threads=1)(x)
    for out_name, ref in zip(output_names, keras_net(x)):
        np.testing.assert_allclose(got[out_name], np.asarray(ref), atol=1e-4)


# --- quantization ------------------------------------------------------------------------------
def test_quantize_dequantize_known_values():
    details = {"name": "x", "dtype": np.int8, "quantization": (0.5, -3)}
    q = quantize(np.array([0.0, 1.0, -1.26, 100.0, -100.0]), details)
    assert q.dtype == np.int8
    np.testing.assert_array_equal(q, [-3, -1, -6, 127, -128])
    np.testing.assert_allclose(dequantize(np.array([-3, -1, 127], np.int8), details),
                               [0.0, 1.0, 65.0])
    u8 = {"name": "y", "dtype": np.uint8, "quantization": (1 / 255, 0)}
    np.testing.assert_array_equal(quantize(np.array([0.0, 0.5, 1.0, 2.0]), u8), [0, 128, 255, 255])


def test_quantize_without_parameters_is_an_error():
    with pytest.raises(ModelError, match="without quantization parameters"):
        quantize(np.zeros(3), {"name": "x", "dtype": np.int8, "quantization": (0.0, 0)})


def _tiny_models(tmp_path):
    """A dense layer y = x W + b as (a) a float model without signature, dynamic batch, and
    (b) a full-integer int8 model with int8 input and output."""
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(3)
    w = rng.normal(size=(4, 3)).astype(np.float32)
    b = rng.normal(size=(3,)).astype(np.float32)

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    def dense(x):
        return tf.matmul(x, tf.constant(w)) + tf.constant(b)

    float_path = tmp_path / "dense_f32.tflite"
    converter = tf.lite.TFLiteConverter.from_concrete_functions([dense.get_concrete_function()])
    float_path.write_bytes(converter.convert())

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    def dense1(x):
        return tf.matmul(x, tf.constant(w)) + tf.constant(b)

    def representative():
        for _ in range(64):
            yield [rng.uniform(-1, 1, (1, 4)).astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [dense1.get_concrete_function()], tf.Module())
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    int8_path = tmp_path / "dense_int8.tflite"
    int8_path.write_bytes(converter.convert())
    return float_path, int8_path, w, b


def test_raw_tensors_and_int8_model(tmp_path):
    float_path, int8_path, w, b = _tiny_models(tmp_path)
    x = np.random.default_rng(4).uniform(-1, 1, (5, 4)).astype(np.float32)

    plain = TFLiteModel(float_path)
    assert plain.signature is None  # the raw input/output tensor path
    (out,) = plain(x).values()
    np.testing.assert_allclose(out, x @ w + b, atol=1e-5)
    (out2,) = plain(x[:2]).values()  # resized batch
    np.testing.assert_allclose(out2, x[:2] @ w + b, atol=1e-5)

    quant = TFLiteModel(int8_path, num_threads=1)
    (name,) = quant.output_names
    in_details = quant.input_details[quant.input_names[0]]
    out_details = quant.output_details[name]
    assert np.dtype(in_details["dtype"]) == np.int8
    in_scale, out_scale = in_details["quantization"][0], out_details["quantization"][0]
    ref = x[:1] @ w + b
    got = quant(x[:1])[name]  # float in: quantized; int8 out: dequantized
    assert got.dtype == np.float32
    # Input rounding (half a step, times sum |w|) plus output rounding.
    tolerance = 0.5 * in_scale * np.abs(w).sum(0).max() + 2 * out_scale
    np.testing.assert_allclose(got, ref, atol=tolerance)
    raw = quant(quantize(x[:1], in_details), dequantize_outputs=False)[name]
    assert raw.dtype == np.int8
    np.testing.assert_allclose(dequantize(raw, out_details), got)
