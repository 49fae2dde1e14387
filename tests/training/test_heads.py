"""Margin heads against the numpy formula s * (cos(m1 * theta + m2) - m3), written here."""

import math

import keras
import numpy as np
import pytest

from tests.training.backend_utils import gradient, variables_gradient
from training.heads import MARGIN_PRESETS, CombinedMarginHead, MultiHeadClassifier
from training.losses import multi_head_cross_entropy

PRESETS = sorted([*MARGIN_PRESETS, "softmax"])


def ref_logits(x, w, labels, scale, m1, m2, m3, easy_margin=False, normalize=True, bias=None):
    """Per-sample numpy reference of insightface's combined margin (float64)."""
    x = x.astype(np.float64)
    w = w.astype(np.float64)
    if not normalize:
        return x @ w + (0.0 if bias is None else bias)
    cos = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (w / np.linalg.norm(w, axis=0))
    cos = np.clip(cos, -1.0, 1.0)
    out = cos.copy()
    for i, y in enumerate(labels):
        c = cos[i, y]
        theta = math.acos(c)
        margin = math.cos(m1 * theta + m2) - m3
        if easy_margin:
            out[i, y] = margin if c > 0 else c
        elif m1 * theta + m2 < math.pi:
            out[i, y] = margin
        elif m1 == 1.0:  # arcface_torch: cos(theta) - sin(pi - m2) * m2
            out[i, y] = c - math.sin(math.pi - m2) * m2 - m3
        else:  # continuous where m1 * theta + m2 reaches pi
            out[i, y] = c - (1.0 + math.cos((math.pi - m2) / m1)) - m3
    return scale * out


def _head_params(head):
    return {"scale": head.scale, "m1": head.m1, "m2": head.m2, "m3": head.m3,
            "easy_margin": head.easy_margin, "normalize": head.normalize}


def _data(n=12, dim=8, classes=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    labels = rng.integers(0, classes, size=n)
    return x, labels


def _built_head(head, x, labels, seed=1):
    head([x, labels])
    rng = np.random.default_rng(seed)
    head.kernel.assign(rng.normal(size=head.kernel.shape).astype(np.float32))
    if head.bias is not None:
        head.bias.assign(rng.normal(size=head.bias.shape).astype(np.float32))
    return head


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("easy_margin", [False, True])
def test_logits_equal_numpy_formula(preset, easy_margin):
    x, labels = _data()
    head = _built_head(CombinedMarginHead.from_preset(preset, 5, easy_margin=easy_margin),
                       x, labels)
    w = np.asarray(head.kernel)
    # Push some samples towards the opposite of their centre (theta near pi) so the
    # fallback branch of the hard margin is exercised too.
    x[:4] = -(w[:, labels[:4]].T) * 3.0 + 0.05 * x[:4]
    got = np.asarray(head([x, labels]))
    bias = None if head.bias is None else np.asarray(head.bias)
    ref = ref_logits(x, w, labels, bias=bias, **_head_params(head))
    np.testing.assert_allclose(got / head.scale, ref / head.scale, atol=1e-5)
    # Without labels: the margin-free logits.
    ref_plain = ref_logits(x, w, labels, head.scale, 1.0, 0.0, 0.0, normalize=head.normalize,
                           bias=bias)
    np.testing.assert_allclose(np.asarray(head(x)) / head.scale, ref_plain / head.scale,
                               atol=1e-5)


def test_margins_penalise_only_the_target_logit():
    x, labels = _data(seed=2)
    arc = _built_head(CombinedMarginHead.from_preset("arcface", 5), x, labels)
    plain = CombinedMarginHead.from_preset("norm_softmax", 5)
    plain([x, labels])
    plain.kernel.assign(arc.kernel)
    a, p = np.asarray(arc([x, labels])), np.asarray(plain([x, labels]))
    target = np.zeros_like(a, dtype=bool)
    target[np.arange(len(labels)), labels] = True
    np.testing.assert_allclose(a[~target], p[~target], atol=1e-4)
    assert np.all(a[target] < p[target])


def test_negative_label_gets_no_margin():
    x, labels = _data(seed=12)
    labels[:3] = -1
    head = _built_head(CombinedMarginHead.from_preset("arcface", 5), x, labels)
    w = np.asarray(head.kernel)
    got = np.asarray(head([x, labels])) / 64.0
    plain = ref_logits(x, w, labels[:0], 64.0, 1.0, 0.0, 0.0) / 64.0
    np.testing.assert_allclose(got[:3], plain[:3], atol=1e-5)
    ref = ref_logits(x[3:], w, labels[3:], 64.0, 1.0, 0.5, 0.0) / 64.0
    np.testing.assert_allclose(got[3:], ref, atol=1e-5)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("easy_margin", [False, True])
def test_finite_loss_and_gradients_at_theta_0_half_pi_pi(preset, easy_margin):
    classes = dim = 4
    head = CombinedMarginHead.from_preset(preset, classes, easy_margin=easy_margin)
    labels = np.array([0, 1, 2])
    x = np.zeros((3, dim), np.float32)
    head([x + 1.0, labels])
    head.kernel.assign(np.eye(dim, dtype=np.float32))
    x[0, 0] = 1.0  # theta = 0 to its centre
    x[1, 0] = 1.0  # theta = pi / 2 to centre 1
    x[2, 2] = -1.0  # theta = pi to centre 2
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def loss_of_x(v):
        return ce(labels, head([v, labels]))

    value = float(loss_of_x(x))
    assert np.isfinite(value)
    (gx,) = gradient(loss_of_x, x)
    (gw,) = variables_gradient(lambda: ce(labels, head([x, labels])), [head.kernel])
    assert np.all(np.isfinite(gx)) and np.all(np.isfinite(gw))
    # The logits themselves match the formula at these angles.
    ref = ref_logits(x, np.eye(dim), labels, **_head_params(head))
    np.testing.assert_allclose(np.asarray(head([x, labels])) / head.scale, ref / head.scale,
                               atol=1e-5)


@pytest.fixture
def mixed_precision():
    keras.config.set_dtype_policy("mixed_float16")
    try:
        yield
    finally:
        keras.config.set_dtype_policy("float32")


@pytest.mark.parametrize("preset", ["arcface", "cosface", "sphereface"])
def test_mixed_precision_margins_in_float32(mixed_precision, preset):
    x, labels = _data(n=6, dim=16, classes=7, seed=3)
    inputs = keras.Input((16,))
    label_input = keras.Input((), dtype="int32")
    features = keras.layers.Dense(16, name="float16_dense")(inputs)
    head = CombinedMarginHead.from_preset(preset, 7)
    model = keras.Model([inputs, label_input], head([features, label_input]))
    assert model.get_layer("float16_dense").compute_dtype == "float16"
    assert head.kernel.dtype == "float32"
    logits = model([x, labels])
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    # Reference from the float16 features the head receives, in float64.
    feats = np.asarray(model.get_layer("float16_dense")(x)).astype(np.float32)
    ref = ref_logits(feats, np.asarray(head.kernel), labels, **_head_params(head))
    np.testing.assert_allclose(np.asarray(logits) / 64.0, ref / 64.0, atol=1e-5)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    grads = variables_gradient(lambda: ce(labels, model([x, labels])), model.trainable_weights)
    assert all(np.all(np.isfinite(g.astype(np.float32))) for g in grads)


@pytest.mark.parametrize("mode,num_heads", [("split", 2), ("split", 4), ("project", 2),
                                            ("project", 4)])
def test_multi_head_logits_and_summed_loss(mode, num_heads):
    x, labels = _data(n=10, dim=16, classes=6, seed=4)
    layer = MultiHeadClassifier(6, num_heads=num_heads, mode=mode,
                                head_config={"scale": 32.0, "m2": 0.4})
    outputs = layer([x, labels])
    assert len(outputs) == num_heads
    rng = np.random.default_rng(5)
    for v in layer.weights:
        v.assign(rng.normal(size=v.shape).astype(np.float32))
    outputs = [np.asarray(o) for o in layer([x, labels])]
    refs = []
    for i, head in enumerate(layer.heads):
        if mode == "split":
            part = x[:, i * 16 // num_heads:(i + 1) * 16 // num_heads]
        else:
            part = x @ np.asarray(layer.projections[i].kernel)
        refs.append(ref_logits(part, np.asarray(head.kernel), labels, 32.0, 1.0, 0.4, 0.0))
        assert outputs[i].shape == (10, 6)
        np.testing.assert_allclose(outputs[i] / 32.0, refs[i] / 32.0, atol=1e-5)
    ref_loss = sum(np.mean([np.log(np.exp(r).sum()) - r[y] for r, y in zip(ref, labels)])
                   for ref in refs)
    got = float(multi_head_cross_entropy(labels, outputs))
    np.testing.assert_allclose(got, ref_loss, rtol=1e-4)


def test_config_round_trip_and_keras_save_load(tmp_path):
    head = CombinedMarginHead(9, scale=30.0, m1=1.2, m2=0.1, m3=0.05, easy_margin=True,
                              name="margin")
    multi = MultiHeadClassifier(9, num_heads=2, mode="project", projection_size=3,
                                head_config={"m3": 0.35, "m2": 0.0}, name="multi")
    for layer in (head, multi):
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()

    inputs = keras.Input((8,))
    labels_in = keras.Input((), dtype="int32")
    outputs = [head([inputs, labels_in]), *multi([inputs, labels_in])]
    model = keras.Model([inputs, labels_in], outputs)
    rng = np.random.default_rng(6)
    for v in model.weights:
        v.assign(rng.normal(size=v.shape).astype(np.float32))
    x, labels = _data(n=5, dim=8, classes=9, seed=7)
    before = [np.asarray(o) for o in model([x, labels])]
    path = tmp_path / "heads.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    after = [np.asarray(o) for o in loaded([x, labels])]
    for b, a in zip(before, after):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kwargs,match", [
    ({"num_classes": 1}, "num_classes must be >= 2"),
    ({"num_classes": 5, "m1": 0.5}, "margins need"),
    ({"num_classes": 5, "scale": 0}, "scale must be > 0"),
    ({"num_classes": 5, "m2": 0.5, "normalize": False}, "plain softmax"),
])
def test_head_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CombinedMarginHead(**kwargs)


def test_unknown_preset_and_bad_multi_head():
    with pytest.raises(ValueError, match="unknown head preset 'arc'"):
        CombinedMarginHead.from_preset("arc", 5)
    with pytest.raises(ValueError, match="unknown mode 'concat'"):
        MultiHeadClassifier(5, mode="concat")
    with pytest.raises(ValueError, match="divide by num_heads"):
        MultiHeadClassifier(5, num_heads=4, mode="split")(np.zeros((2, 6), np.float32))
