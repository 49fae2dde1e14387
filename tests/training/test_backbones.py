"""Backbones: parameter counts against published numbers and against per-layer arithmetic
from the papers' tables, shapes, config round trip, .keras reload, TFLite conversion."""

import keras
import numpy as np
import pytest

from training.models import BACKBONES, L2Normalize, get_backbone

TF_ONLY = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                             reason="TFLite conversion needs the TensorFlow backend")


def trainable_params(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def all_params(model):
    return sum(int(np.prod(w.shape)) for w in model.weights)


# --- Per-layer arithmetic from the papers' tables (independent of the Keras code) --------

def _conv(k, cin, cout):
    return k * k * cin * cout


def mobilefacenet_arithmetic(emb=128, prelu=True):
    """Trainable parameters of Table 1 of Chen et al. 2018: conv weights, BN gamma+beta,
    one PReLU slope per channel."""
    act = 1 if prelu else 0
    total = _conv(3, 3, 64) + 64 * (2 + act)  # conv3x3/2 64
    total += 9 * 64 + 64 * (2 + act)  # depthwise 3x3 64
    cin = 64
    for t, c, n, _ in ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2),
                       (2, 128, 2, 1)):
        for _ in range(n):
            hidden = cin * t
            total += _conv(1, cin, hidden) + hidden * (2 + act)  # expand
            total += 9 * hidden + hidden * (2 + act)  # depthwise
            total += _conv(1, hidden, c) + c * 2  # linear projection
            cin = c
    total += _conv(1, 128, 512) + 512 * (2 + act)  # conv1x1 512
    total += 49 * 512 + 512 * 2  # linear GDC 7x7
    total += _conv(1, 512, emb) + emb * 2  # linear conv1x1 + BN
    return total


def ir_se50_arithmetic(emb=512):
    """Trainable parameters of insightface's IR-SE50 (torch counting: weights, BN affine,
    PReLU slopes)."""
    total = _conv(3, 3, 64) + 64 * 2 + 64  # input conv, BN, PReLU
    cin = 64
    for depth, units in ((64, 3), (128, 4), (256, 14), (512, 3)):
        for _ in range(units):
            if cin != depth:
                total += _conv(1, cin, depth) + depth * 2  # shortcut conv + BN
            total += cin * 2  # BN
            total += _conv(3, cin, depth) + depth  # conv, PReLU
            total += _conv(3, depth, depth) + depth * 2  # conv, BN
            total += 2 * depth * (depth // 16)  # SE fc1, fc2 (no bias)
            cin = depth
    total += 512 * 2 + (512 * 7 * 7 * emb + emb) + emb * 2  # BN, Dense, BN
    return total


def mobileid_arithmetic(emb=128):
    total = _conv(3, 3, 16) + 16 * 2
    cin = 16
    for c in (32, 64, 64, 128, 128):
        total += 9 * cin + cin * 2 + _conv(1, cin, c) + c * 2
        cin = c
    total += 49 * 128 + 128 * 2 + _conv(1, 128, emb) + emb * 2
    return total


# --- Parameter counts --------------------------------------------------------------------

@pytest.mark.parametrize("activation", ["prelu", "relu"])
def test_mobilefacenet_parameter_count(activation):
    model = get_backbone("mobilefacenet", embedding_size=128, activation=activation)
    assert trainable_params(model) == mobilefacenet_arithmetic(128, activation == "prelu")
    # Chen et al. 2018, Table 2: 0.99M parameters.
    assert abs(trainable_params(model) / 0.99e6 - 1.0) < 0.02


def test_mobileid_parameter_count_and_default_size():
    model = get_backbone("mobileid")
    assert model.output_shape == (None, 128)
    assert trainable_params(model) == mobileid_arithmetic(128)


@pytest.mark.slow
def test_inception_resnet_v1_parameter_count():
    # nyoki-mtl/keras-facenet, facenet_keras.h5 (davidsandberg 20170512-110547, 128-d):
    # "Total params: 22,808,144, Trainable params: 22,779,312".
    model = get_backbone("inception_resnet_v1", embedding_size=128)
    assert all_params(model) == 22_808_144
    assert trainable_params(model) == 22_779_312
    # 20180402-114759 (512-d): the bottleneck grows by 1792 x 384 weights and 384 x 3 BN
    # (beta, moving mean, moving variance).
    model = get_backbone("inception_resnet_v1")
    assert all_params(model) == 22_808_144 + 1792 * 384 + 3 * 384


@pytest.mark.slow
def test_ir_se50_parameter_count():
    model = get_backbone("ir_se50")
    assert trainable_params(model) == ir_se50_arithmetic(512)
    assert abs(trainable_params(model) / 43.8e6 - 1.0) < 0.02  # ~43.8M, 512-d at 112x112


# --- Shapes, arguments -------------------------------------------------------------------

@pytest.mark.parametrize("name,kwargs,shape", [
    ("mobilefacenet", {"input_shape": (112, 112, 3)}, (112, 112, 3)),
    ("mobilefacenet", {"input_shape": (64, 64, 3), "embedding_size": 256}, (64, 64, 3)),
    ("mobilefacenet", {"activation": "relu"}, (112, 112, 3)),
    ("mobileid", {"input_shape": (64, 64, 3), "embedding_size": 64}, (64, 64, 3)),
])
def test_output_shapes(name, kwargs, shape):
    model = get_backbone(name, **kwargs)
    emb = kwargs.get("embedding_size", 128)
    out = np.asarray(model(np.zeros((2, *shape), np.float32), training=False))
    assert out.shape == (2, emb) and out.dtype == np.float32
    assert np.all(np.isfinite(out))


@pytest.mark.slow
@pytest.mark.parametrize("name,shape,emb", [
    ("inception_resnet_v1", (160, 160, 3), 512),
    ("inception_resnet_v1", (112, 112, 3), 128),
    ("ir_se50", (112, 112, 3), 512),
])
def test_big_output_shapes(name, shape, emb):
    model = get_backbone(name, embedding_size=emb, input_shape=shape)
    out = model(np.zeros((1, *shape), np.float32), training=False)
    assert tuple(out.shape) == (1, emb)


def test_registry_and_argument_errors():
    assert sorted(BACKBONES) == ["dlib_resnet", "inception_resnet_v1", "ir_se50", "mobilefacenet",
                               "mobileid"]
    with pytest.raises(ValueError, match=r"unknown backbone 'resnet'; choose from \["):
        get_backbone("resnet")
    with pytest.raises(ValueError, match="input_shape must be"):
        get_backbone("mobilefacenet", input_shape=(112, 112))
    with pytest.raises(ValueError, match="at least 32"):
        get_backbone("mobilefacenet", input_shape=(16, 16, 3))
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        get_backbone("mobilefacenet", activation="gelu")
    with pytest.raises(ValueError, match="embedding_size must be >= 1"):
        get_backbone("mobileid", embedding_size=0)


def test_backbone_under_mixed_precision():
    x = np.random.default_rng(0).uniform(-1, 1, size=(2, 64, 64, 3)).astype(np.float32)
    full = get_backbone("mobileid", input_shape=(64, 64, 3))
    _randomize(full)
    ref = np.asarray(L2Normalize()(full(x, training=False)))
    keras.config.set_dtype_policy("mixed_float16")
    try:
        half = get_backbone("mobileid", input_shape=(64, 64, 3))
        half.set_weights(full.get_weights())
        out = L2Normalize()(half(x, training=False))
    finally:
        keras.config.set_dtype_policy("float32")
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    np.testing.assert_allclose(np.linalg.norm(np.asarray(out), axis=1), 1.0, atol=1e-5)
    assert np.all(np.sum(np.asarray(out) * ref, axis=1) > 0.999)  # cosine to float32


# --- L2Normalize -------------------------------------------------------------------------

def test_l2_normalize_matches_numpy_and_round_trips():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 7)).astype(np.float32)
    x[3] = 0.0
    layer = L2Normalize()
    got = np.asarray(layer(x))
    ref = np.zeros_like(x)
    for i, row in enumerate(x.astype(np.float64)):
        norm = np.sqrt(sum(v * v for v in row))
        ref[i] = row / norm if norm > 0 else 0.0
    np.testing.assert_allclose(got, ref, atol=1e-6)
    clone = L2Normalize.from_config(L2Normalize(axis=1, epsilon=1e-8).get_config())
    assert (clone.axis, clone.epsilon) == (1, 1e-8)
    half = layer(x.astype(np.float16))
    assert keras.backend.standardize_dtype(half.dtype) == "float32"
    with pytest.raises(ValueError, match="epsilon must be > 0"):
        L2Normalize(epsilon=0)


# --- Config round trip, .keras reload ----------------------------------------------------

def _randomize(model, seed=0):
    """Random weights everywhere (BN statistics too) so a reload that lost any would show."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        values = rng.normal(scale=0.1, size=v.shape)
        if "variance" in v.path:
            values = 0.5 + np.abs(values)
        v.assign(values.astype(np.float32))


def check_save_load(model, tmp_path, batch=2):
    _randomize(model)
    x = np.random.default_rng(1).normal(size=(batch, *model.input_shape[1:])).astype(np.float32)
    before = np.asarray(model(x, training=False))
    clone = type(model).from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(np.asarray(clone(x, training=False)), before, rtol=1e-5,
                               atol=1e-5)
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is type(model)
    np.testing.assert_array_equal(np.asarray(loaded(x, training=False)), before)


@pytest.mark.parametrize("name,kwargs", [
    ("mobilefacenet", {"input_shape": (64, 64, 3)}),
    ("mobileid", {"input_shape": (64, 64, 3), "activation": "prelu"}),
])
def test_config_round_trip_and_keras_reload(name, kwargs, tmp_path):
    check_save_load(get_backbone(name, **kwargs), tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name,shape", [("inception_resnet_v1", (96, 96, 3)),
                                        ("ir_se50", (112, 112, 3))])
def test_big_config_round_trip_and_keras_reload(name, shape, tmp_path):
    check_save_load(get_backbone(name, input_shape=shape, embedding_size=64), tmp_path, 1)


# --- TFLite ------------------------------------------------------------------------------

def convert_and_check(model, rtol=1e-4):
    """Converts backbone + L2Normalize to float TFLite with builtin ops only, checks the op
    list and compares outputs with Keras. Returns the set of op names."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    normalized = keras.Sequential([model, L2Normalize(name="l2")])
    shape = (1, *model.input_shape[1:])
    fn = tf.function(lambda x: normalized(x, training=False))
    concrete = fn.get_concrete_function(tf.TensorSpec(shape, tf.float32))
    # No trackable object: the converter then freezes the variables into constants (with
    # one, Keras 3 variables stay READ_VARIABLE ops and the model reads uninitialised state).
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no Flex
    flatbuffer = converter.convert()
    # Without the default XNNPACK delegate, so the op list shows the model's own ops.
    interpreter = Interpreter(
        model_content=flatbuffer,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interpreter.allocate_tensors()
    ops_used = {op["op_name"] for op in interpreter._get_ops_details()}
    assert not any(op.startswith("Flex") or op in ("CUSTOM", "READ_VARIABLE", "DELEGATE")
                   for op in ops_used), ops_used
    x = np.random.default_rng(2).uniform(-1, 1, size=shape).astype(np.float32)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(got, np.asarray(normalized(x, training=False)), rtol=rtol,
                               atol=1e-5)
    return ops_used


@TF_ONLY
@pytest.mark.parametrize("activation", [
    "prelu", pytest.param("relu", marks=pytest.mark.slow)])
def test_mobilefacenet_converts_to_builtin_tflite(activation):
    model = get_backbone("mobilefacenet", activation=activation)
    _randomize(model)
    ops_used = convert_and_check(model)
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "L2_NORMALIZATION"} <= ops_used
    # ReLU fuses into the convolutions; PReLU stays a separate op.
    assert ("PRELU" in ops_used) == (activation == "prelu")


@TF_ONLY
def test_mobileid_converts_to_builtin_tflite():
    model = get_backbone("mobileid")
    _randomize(model)
    assert "L2_NORMALIZATION" in convert_and_check(model)


@TF_ONLY
@pytest.mark.slow
@pytest.mark.parametrize("name", ["inception_resnet_v1", "ir_se50"])
def test_big_backbones_convert_to_builtin_tflite(name):
    model = get_backbone(name)
    _randomize(model)
    assert "L2_NORMALIZATION" in convert_and_check(model, rtol=1e-3)
