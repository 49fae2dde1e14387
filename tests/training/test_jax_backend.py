"""Runs the backbone, head and loss tests again on the JAX backend (CPU), in a subprocess:
Keras fixes its backend at first import, so this process cannot switch."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MODULES = ["test_backbones.py", "test_heads.py", "test_losses.py"]
# JAX compiles every eager op anew for each shape, so the default run takes one case per
# code path (mobilefacenet as the backbone); the slow test runs every test on JAX.
DEFAULT_SELECTION = (
    "(reload and mobilefacenet) or l2_normalize or (semi_hard_matches and 0.2) "
    "or (batch_hard_matches and False-False) or gradients_finite "
    "or (numpy_formula and False-) or (theta_0 and False-arcface) "
    "or (mixed_precision and arcface) or (multi_head_logits and split-2)"
)

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed"),
    pytest.mark.skipif(keras.backend.backend() == "jax", reason="already running on JAX"),
]


def _pytest_on_jax(*selection):
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *selection,
           *[str(HERE / name) for name in MODULES]]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=3600, check=False)
    tail = (result.stdout + result.stderr)[-4000:]
    assert result.returncode == 0, f"JAX backend run failed:\n{tail}"
    assert " passed" in result.stdout and " failed" not in result.stdout, tail


def test_core_cases_on_jax():
    _pytest_on_jax("-m", "not slow", "-k", DEFAULT_SELECTION)


@pytest.mark.slow
def test_everything_on_jax():
    _pytest_on_jax("-m", "")
