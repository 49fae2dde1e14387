"""eval.speed on a tiny Keras model; errors as one line with exit 2."""

import json

import pytest

from eval.speed import main


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    import keras

    inp = keras.Input((16, 16, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inp))
    path = tmp_path_factory.mktemp("speed") / "s.keras"
    keras.Model(inp, keras.layers.Dense(4)(x)).save(path)
    return path


def test_speed_keras(model_path, tmp_path, capsys):
    out = tmp_path / "speed.json"
    rc = main([str(model_path), "--runs", "4", "--warmup", "1", "--batch-size", "2",
               "--json", str(out), "--quiet"])
    assert rc == 0
    assert "s.keras" in capsys.readouterr().out
    (r,) = json.loads(out.read_text())
    assert r["kind"] == "keras" and r["batch_size"] == 2 and r["input_size"] == [16, 16]
    # faces/s is faces over total time; mean per-face latency is total time over faces.
    assert r["faces_per_s"] * r["latency_ms_mean"] == pytest.approx(1000.0, rel=1e-6)
    assert r["latency_ms_min"] <= r["latency_ms_median"] <= r["latency_ms_p90"]


def test_speed_errors(tmp_path, capsys):
    (tmp_path / "m.pt").write_bytes(b"x")
    assert main([str(tmp_path / "m.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tfface-speed: error: unknown model file type '.pt'")
    assert len(err.splitlines()) == 1
    assert main([str(tmp_path / "m.pt"), "--runs", "0"]) == 2
