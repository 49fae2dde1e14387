"""Learning-rate schedules against closed-form numpy references, serialisation, optimizers
and the config/argparse round trip."""

import json
import math

import keras
import numpy as np
import pytest

from tfface.errors import DataError
from training import config as config_mod
from training.config import ArcFaceConfig, DistillConfig, TripletConfig
from training.optimizers import make_optimizer, no_decay_variables
from training.schedules import WarmupCosine, WarmupPiecewise, make_schedule


def cosine_reference(t, base, total, warm, min_ratio):
    """Textbook warm-up + half cosine, written independently with Python floats."""
    if t < warm:
        return base * t / warm
    p = min(1.0, (t - warm) / (total - warm))
    lo = base * min_ratio
    return lo + (base - lo) * 0.5 * (1 + math.cos(math.pi * p))


def piecewise_reference(t, base, bounds, decay, warm):
    if t < warm:
        return base * t / warm
    return base * decay ** sum(t >= b for b in bounds)


def values(schedule, steps):
    return np.array([float(keras.ops.convert_to_numpy(schedule(s))) for s in steps])


def test_warmup_cosine_matches_reference():
    sched = WarmupCosine(0.1, total_steps=1000, warmup_steps=100, min_lr_ratio=0.01)
    steps = [0, 1, 50, 99, 100, 101, 400, 550, 999, 1000, 5000]
    ref = [cosine_reference(t, 0.1, 1000, 100, 0.01) for t in steps]
    np.testing.assert_allclose(values(sched, steps), ref, rtol=1e-5, atol=1e-8)
    # Known points: peak after warm-up, halfway = mean of peak and floor, floor at the end.
    assert values(sched, [100])[0] == pytest.approx(0.1, rel=1e-6)
    assert values(sched, [550])[0] == pytest.approx((0.1 + 0.001) / 2, rel=1e-5)
    assert values(sched, [1000])[0] == pytest.approx(0.001, rel=1e-5)


def test_warmup_piecewise_matches_reference():
    sched = WarmupPiecewise(0.1, boundaries=[300, 600, 900], decay=0.1, warmup_steps=50)
    steps = [0, 10, 49, 50, 299, 300, 599, 600, 899, 900, 2000]
    ref = [piecewise_reference(t, 0.1, [300, 600, 900], 0.1, 50) for t in steps]
    np.testing.assert_allclose(values(sched, steps), ref, rtol=1e-5, atol=1e-10)


@pytest.mark.parametrize("cls,kwargs", [
    (WarmupCosine, {"base_lr": 0.2, "total_steps": 77, "warmup_steps": 7, "min_lr_ratio": 0.1}),
    (WarmupPiecewise, {"base_lr": 0.2, "boundaries": [10, 20], "decay": 0.5, "warmup_steps": 3}),
])
def test_schedule_serialisation_round_trip(cls, kwargs):
    sched = cls(**kwargs)
    again = cls.from_config(json.loads(json.dumps(sched.get_config())))
    steps = list(range(0, 90, 7))
    np.testing.assert_allclose(values(again, steps), values(sched, steps))
    restored = keras.optimizers.schedules.deserialize(
        keras.optimizers.schedules.serialize(sched))
    assert isinstance(restored, cls)


def test_schedule_rejects_bad_arguments():
    with pytest.raises(ValueError, match="warmup_steps"):
        WarmupCosine(0.1, total_steps=10, warmup_steps=10)
    with pytest.raises(ValueError, match="increasing"):
        WarmupPiecewise(0.1, boundaries=[5, 3])


def test_make_schedule_from_config():
    cfg = ArcFaceConfig(data="d", out="o", lr=0.4, warmup_epochs=2, lr_schedule="piecewise",
                        lr_milestones=(0.5, 0.75), lr_decay=0.1)
    sched = make_schedule(cfg, total_steps=400, steps_per_epoch=20)
    assert isinstance(sched, WarmupPiecewise)
    assert sched.warmup_steps == 40 and sched.boundaries == [200, 300]
    np.testing.assert_allclose(values(sched, [20, 40, 199, 200, 300]),
                               [0.2, 0.4, 0.4, 0.04, 0.004], rtol=1e-5)


def test_weight_decay_skips_bias_and_batchnorm():
    inputs = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(2, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.PReLU(shared_axes=[1, 2], name="prelu")(x)
    out = keras.layers.Dense(2, name="fc")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, out)
    skipped = {v.path for v in no_decay_variables(model.trainable_variables)}
    assert skipped == {"conv/bias", "bn/gamma", "bn/beta", "prelu/alpha", "fc/bias"}
    # One step with zero gradients: only decay moves weights; excluded ones stay put.
    opt = make_optimizer("sgd", 0.5, weight_decay=0.1, momentum=0.0,
                         variables=model.trainable_variables)
    before = {v.path: keras.ops.convert_to_numpy(v).copy() for v in model.trainable_variables}
    model.get_layer("bn").gamma.assign(np.full((2,), 2.0, np.float32))
    before["bn/gamma"] = np.full((2,), 2.0, np.float32)
    opt.apply_gradients([(keras.ops.zeros_like(v), v) for v in model.trainable_variables])
    for v in model.trainable_variables:
        now = keras.ops.convert_to_numpy(v)
        expected = before[v.path] if v.path in skipped else before[v.path] * (1 - 0.5 * 0.1)
        np.testing.assert_allclose(now, expected, rtol=1e-6, err_msg=v.path)


def test_unknown_optimizer():
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        make_optimizer("rmsprop", 0.1)


@pytest.mark.parametrize("cls", [ArcFaceConfig, TripletConfig, DistillConfig])
def test_parser_covers_every_field_and_round_trips(cls, tmp_path):
    parser = config_mod.build_parser(cls, "prog", "desc")
    help_text = parser.format_help()
    import dataclasses

    for f in dataclasses.fields(cls):
        assert "--" + f.name.replace("_", "-") in help_text, f.name
    data = tmp_path / "data"
    data.mkdir()
    args = parser.parse_args(["--data", str(data), "--out", str(tmp_path / "o"), "--lr", "0.3",
                              "--lr-milestones", "0.5", "0.8", "--no-augment"])
    cfg = config_mod.config_from_args(cls, args)
    assert cfg.lr == 0.3 and cfg.lr_milestones == (0.5, 0.8) and cfg.augment is False
    path = config_mod.save_config(cfg, tmp_path / "o", "prog")
    assert config_mod.load_config(cls, path) == cfg
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 1.0


def test_config_validation_messages(tmp_path):
    ok = {"data": str(tmp_path), "out": str(tmp_path / "o")}
    with pytest.raises(DataError, match="--data is required"):
        config_mod.validate(ArcFaceConfig(out="x"))
    with pytest.raises(DataError, match="--batch-size must be positive"):
        config_mod.validate(ArcFaceConfig(batch_size=0, **ok))
    with pytest.raises(DataError, match="--pairs and --pairs-images"):
        config_mod.validate(ArcFaceConfig(pairs=str(tmp_path), **ok))
    with pytest.raises(DataError, match="KEY=VALUE"):
        config_mod.validate(ArcFaceConfig(backbone_options=("relu",), **ok))
    cfg = ArcFaceConfig(backbone_options=("activation=relu", "depth=3"), **ok)
    assert config_mod.backbone_kwargs(cfg) == {"activation": "relu", "depth": 3}
