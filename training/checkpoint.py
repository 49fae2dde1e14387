"""Atomic training checkpoints and resume, on any Keras backend.

A checkpoint is a folder ``<out>/checkpoints/step-<NNNNNNNN>/`` holding

* ``model.weights.h5`` - every variable of the training model (backbone + head, BatchNorm
  statistics and seed-generator states included), written by ``model.save_weights``;
* ``optimizer.npz`` - the optimizer's own variables (iteration count, momenta, loss scale)
  from ``Optimizer.save_own_variables``, the Keras API the ``.keras`` format uses;
* ``state.json`` - global step, epoch, step within the epoch, the seed and any extra state
  (data position, numpy RNG) the program registers.

Each folder is written under a temporary name and renamed into place, then ``latest.json`` is
replaced atomically; a ``kill -9`` at any moment leaves the previous checkpoint usable.
Resuming reads the newest complete checkpoint.
"""

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np

from tfface.errors import ModelError
from training.config import write_json_atomic

CHECKPOINT_DIR = "checkpoints"
LATEST = "latest.json"
_STEP_DIR = re.compile(r"^step-(\d{8,})$")
_FILES = ("model.weights.h5", "optimizer.npz", "state.json")


def optimizer_variables_store(optimizer):
    """The optimizer's variables as ``{"0": array, ...}`` (Keras ``save_own_variables``)."""
    store = {}
    optimizer.save_own_variables(store)
    return store


def build_optimizer(model):
    """Create the optimizer's slot variables (momenta, ...) so saved ones can be loaded."""
    opt = model.optimizer
    if not opt.built:
        opt.build(model.trainable_variables)


class CheckpointManager:
    """Save and restore the full training state of a compiled Keras model.

    Args:
        out_dir: the run's output folder (checkpoints go in ``out_dir/checkpoints``).
        model: the compiled training model (its ``optimizer`` is saved too).
        keep: how many of the newest checkpoints to keep on disk.
    """

    def __init__(self, out_dir, model, keep=3):
        self.directory = Path(out_dir) / CHECKPOINT_DIR
        self.model = model
        self.keep = int(keep)

    # -- listing ----------------------------------------------------------------------------

    def complete(self):
        """Complete checkpoint folders, oldest first (by step)."""
        if not self.directory.is_dir():
            return []
        found = []
        for p in self.directory.iterdir():
            m = _STEP_DIR.match(p.name)
            if m and p.is_dir() and all((p / f).is_file() for f in _FILES):
                found.append((int(m.group(1)), p))
        return [p for _, p in sorted(found)]

    def latest(self):
        """The newest complete checkpoint folder, or None."""
        pointer = self.directory / LATEST
        if pointer.is_file():
            try:
                name = json.loads(pointer.read_text())["checkpoint"]
                path = self.directory / name
                if all((path / f).is_file() for f in _FILES):
                    return path
            except (ValueError, KeyError, OSError):
                pass  # damaged pointer: fall back to scanning the folders
        done = self.complete()
        return done[-1] if done else None

    # -- saving -----------------------------------------------------------------------------

    def save(self, state):
        """Write a checkpoint for ``state["step"]`` and prune old ones.

        Args:
            state: JSON-serialisable dict with at least ``step`` (global step, int).
        Returns:
            the checkpoint folder.
        """
        step = int(state["step"])
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.directory / f"step-{step:08d}"
        tmp = self.directory / f".tmp-step-{step:08d}-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        # 1. Weights of the whole training model (backbone, head, BN statistics).
        self.model.save_weights(str(tmp / "model.weights.h5"))
        # 2. Optimizer state: iteration counter, momenta/moments, loss scale.
        build_optimizer(self.model)
        store = optimizer_variables_store(self.model.optimizer)
        with open(tmp / "optimizer.npz", "wb") as fh:
            np.savez(fh, **store)
        # 3. Counters and data position; last, so its presence marks a complete folder.
        write_json_atomic(tmp / "state.json", dict(state))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        write_json_atomic(self.directory / LATEST, {"checkpoint": final.name, "step": step})
        self._prune()
        return final

    def _prune(self):
        done = self.complete()
        for path in done[: max(len(done) - self.keep, 0)]:
            shutil.rmtree(path, ignore_errors=True)
        for path in self.directory.glob(".tmp-step-*"):
            pid = path.name.rsplit("-", 1)[-1]
            if pid != str(os.getpid()):
                shutil.rmtree(path, ignore_errors=True)  # left by a killed run

    # -- restoring --------------------------------------------------------------------------

    def restore(self, path=None):
        """Load the newest (or the given) checkpoint into the model and optimizer.

        Returns:
            the saved state dict, or None when there is no checkpoint.
        Raises:
            ModelError: the checkpoint does not match the model (different backbone, head,
                class count or optimizer).
        """
        path = Path(path) if path is not None else self.latest()
        if path is None:
            return None
        build_optimizer(self.model)  # so load_weights finds the slots it stores too
        try:
            self.model.load_weights(str(path / "model.weights.h5"))
        except ValueError as err:
            raise ModelError(f"{path}: checkpoint does not fit this model ({err}); use the "
                             "options of the original run or a new --out") from err
        opt = self.model.optimizer
        with np.load(path / "optimizer.npz") as data:
            store = {k: data[k] for k in data.files}
        if len(store) != len(opt.variables):
            raise ModelError(f"{path}: optimizer has {len(opt.variables)} variables, the "
                             f"checkpoint {len(store)}; was it saved with another --optimizer?")
        for i, var in enumerate(opt.variables):
            if tuple(var.shape) != tuple(store[str(i)].shape):
                raise ModelError(f"{path}: optimizer variable {var.path} has shape "
                                 f"{tuple(var.shape)}, checkpoint {store[str(i)].shape}")
        opt.load_own_variables(store)
        return json.loads((path / "state.json").read_text())


def rng_state(rng):
    """JSON-ready state of a ``numpy.random.Generator`` (PCG64)."""
    state = rng.bit_generator.state
    return {"bit_generator": state["bit_generator"], "state": {k: str(v) for k, v in
                                                               state["state"].items()},
            "has_uint32": state["has_uint32"], "uinteger": state["uinteger"]}


def set_rng_state(rng, saved):
    """Restore a generator from :func:`rng_state` output."""
    state = {"bit_generator": saved["bit_generator"],
             "state": {k: int(v) for k, v in saved["state"].items()},
             "has_uint32": saved["has_uint32"], "uinteger": saved["uinteger"]}
    rng.bit_generator.state = state
