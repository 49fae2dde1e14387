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


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
@pytest.mark.skipif(keras.backend.backend() == "jax", reason="already running on JAX")
def test_models_heads_losses_on_jax(request):
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")
    # The same marker selection as this run, so slow backbones run on JAX under -m slow.
    markexpr = request.config.getoption("markexpr") or "not slow"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", markexpr,
           *[str(HERE / name) for name in MODULES]]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=1800)
    tail = (result.stdout + result.stderr)[-4000:]
    assert result.returncode == 0, f"JAX backend run failed:\n{tail}"
    assert " passed" in result.stdout and "skipped" in result.stdout, tail
