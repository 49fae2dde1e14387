"""Checkpoints: atomic save/restore of weights + optimizer state, and a training run killed
with SIGKILL that resumes from its last checkpoint instead of from zero."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from tests.training.toy import write_identities
from training.checkpoint import CheckpointManager

ROOT = Path(__file__).resolve().parents[2]


def small_model():
    inputs = keras.Input((3,))
    x = keras.layers.Dense(4, name="fc1")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="fc2")(x))
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="mse")
    return model


def test_checkpoint_round_trip_restores_weights_and_optimizer(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 3)), rng.normal(size=(32, 2))
    model = small_model()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)  # 4 steps: momenta are non-zero
    manager = CheckpointManager(tmp_path, model, keep=2)
    manager.save({"step": 4, "epoch": 1, "step_in_epoch": 0})
    weights = [w.copy() for w in model.get_weights()]
    slots = [keras.ops.convert_to_numpy(v).copy() for v in model.optimizer.variables]

    fresh = small_model()
    state = CheckpointManager(tmp_path, fresh).restore()
    assert state["step"] == 4 and state["epoch"] == 1
    for a, b in zip(fresh.get_weights(), weights):
        np.testing.assert_array_equal(a, b)
    restored = [keras.ops.convert_to_numpy(v) for v in fresh.optimizer.variables]
    assert int(restored[0]) == 4  # the iteration counter continues
    for a, b in zip(restored, slots):
        np.testing.assert_array_equal(a, b)
    assert any(np.abs(s).sum() > 0 for s in slots[1:])  # momenta really were saved


def test_latest_survives_partial_writes_and_prunes(tmp_path):
    model = small_model()
    manager = CheckpointManager(tmp_path, model, keep=2)
    for step in (2, 4, 6):
        manager.save({"step": step})
    names = sorted(p.name for p in manager.complete())
    assert names == ["step-00000004", "step-00000006"]
    # A folder left half-written by a killed run (no state.json) is never chosen, and a
    # damaged pointer falls back to scanning.
    partial = manager.directory / "step-00000008"
    partial.mkdir()
    (partial / "model.weights.h5").write_bytes(b"")
    (manager.directory / "latest.json").write_text("{not json")
    assert manager.latest().name == "step-00000006"
    assert CheckpointManager(tmp_path / "empty", model).restore() is None


def read_events(out):
    path = Path(out) / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_kill_9_then_resume_continues_from_last_checkpoint(tmp_path):
    data = write_identities(tmp_path / "data", n_ids=3, per_id=16, size=32)
    out = tmp_path / "run"
    total = 24
    cmd = [sys.executable, "-m", "training.arcface", "--data", data, "--out", str(out),
           "--backbone", "mobileid", "--input-size", "32", "--batch-size", "8",
           "--steps", str(total), "--checkpoint-every", "3", "--head", "softmax",
           "--lr", "0.01", "--warmup-epochs", "0", "--no-progress"]
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    pointer = out / "checkpoints" / "latest.json"
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while not pointer.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert pointer.exists(), "no checkpoint within 120 s"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    saved = json.loads(pointer.read_text())["step"]
    assert 3 <= saved < total and saved % 3 == 0

    second = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300, check=False)
    assert second.returncode == 0, second.stderr[-2000:]
    events = read_events(out)
    starts = [e for e in events if e["event"] in ("start", "resume")]
    assert [e["event"] for e in starts] == ["start", "resume"]
    resume = starts[1]
    # Restarted at the checkpoint, not at 0: step, epoch position and optimizer iterations.
    assert resume["step"] == saved
    assert resume["optimizer_iterations"] == saved
    assert (resume["epoch"], resume["step_in_epoch"]) == divmod(saved, resume["steps_per_epoch"])
    assert f"resuming from step {saved}" in second.stderr
    end = [e for e in events if e["event"] == "end"]
    assert end[-1]["step"] == total
    final = out / "checkpoints" / f"step-{total:08d}"
    state = json.loads((final / "state.json").read_text())
    assert state["step"] == total
    with np.load(final / "optimizer.npz") as opt:
        assert int(opt["0"]) == total  # the iteration counter went on from the checkpoint
    assert (out / "embedding.keras").is_file()


@pytest.mark.slow
def test_resume_on_jax_backend(tmp_path):
    """On JAX the variables live in the jitted state during fit; checkpoints must still hold
    the current step's weights and optimizer iteration (Keras syncs them for callbacks)."""
    data = write_identities(tmp_path / "data", n_ids=3, per_id=16, size=32)
    out = tmp_path / "run"
    base = [sys.executable, "-m", "training.arcface", "--data", data, "--out", str(out),
            "--backbone", "mobileid", "--input-size", "32", "--batch-size", "8",
            "--checkpoint-every", "4", "--head", "softmax", "--warmup-epochs", "0",
            "--no-progress", "--backend", "jax"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("KERAS_BACKEND", None)
    for steps in (10, 14):
        done = subprocess.run([*base, "--steps", str(steps)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
    events = read_events(out)
    assert [e["event"] for e in events if e["event"] in ("start", "resume")] == ["start",
                                                                                  "resume"]
    resume = next(e for e in events if e["event"] == "resume")
    assert resume["backend"] == "jax"
    assert resume["step"] == 10 and resume["optimizer_iterations"] == 10
    for step in (8, 10, 14):
        path = out / "checkpoints" / f"step-{step:08d}" / "optimizer.npz"
        if path.exists():
            with np.load(path) as opt:
                assert int(opt["0"]) == step
