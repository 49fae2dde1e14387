"""The fit logic shared by the three training programs.

A program builds a compiled ``keras.Model`` (backbone + head/loss) inside :func:`device_scope`
and a :class:`TrainData`; :func:`fit` then

1. restores the newest checkpoint in ``--out`` (weights, optimizer state, step, epoch and the
   position inside the epoch), unless ``--no-resume``;
2. runs ``model.fit`` epoch by epoch, the first (resumed) epoch shortened by the steps already
   done, with the data stream of that epoch skipped to the same position;
3. logs scalars, shows progress, checkpoints every N steps and at epoch ends, and runs the
   verification callback.

Devices: on TensorFlow with several visible GPUs the model is built under
``tf.distribute.MirroredStrategy`` (``model.fit`` splits each global batch over the replicas);
on JAX, Keras jit-compiles the train step (``jit_compile="auto"`` means on for JAX).
"""

import contextlib
import json
import math
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
from tqdm import tqdm

from tfface.errors import DataError
from training import callbacks as cb
from training.checkpoint import CHECKPOINT_DIR, CheckpointManager
from training.config import save_config, to_dict
from training.optimizers import optimizer_from_config
from training.schedules import make_schedule

POLICIES = {"off": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}
EVENTS_FILE = "events.jsonl"


@dataclass
class TrainData:
    """What :func:`fit` needs from a data pipeline.

    Attributes:
        steps_per_epoch: batches in one epoch.
        batches: ``batches(epoch, skip)`` -> an object ``model.fit`` accepts (a ``tf.data``
            Dataset or an iterator of numpy ``(x, y)`` batches) yielding at least
            ``steps_per_epoch - skip`` batches of epoch ``epoch``, starting at batch ``skip``.
        info: JSON-ready description for the model card (source, images, identities).
        skipped: optional counter with ``count`` / ``examples`` of unreadable images.
    """

    steps_per_epoch: int
    batches: Callable[[int, int], Any]
    info: dict = field(default_factory=dict)
    skipped: Any = None


def set_precision(cfg):
    """Apply ``--mixed-precision`` as the global Keras dtype policy (before building models).

    With ``float16`` Keras' ``compile`` wraps the optimizer in a LossScaleOptimizer.
    """
    keras.mixed_precision.set_global_policy(POLICIES[cfg.mixed_precision])


def device_scope():
    """(context manager, replicas): MirroredStrategy scope on TF with 2+ GPUs, else a no-op."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_logical_devices("GPU")
        if len(gpus) > 1:
            strategy = tf.distribute.MirroredStrategy()
            return strategy.scope(), strategy.num_replicas_in_sync
    return contextlib.nullcontext(), 1


def plan_steps(cfg, steps_per_epoch):
    """(total_steps, epochs) from ``--steps`` or ``--epochs``."""
    if steps_per_epoch <= 0:
        raise DataError("the data gives no full batch; lower --batch-size or add images")
    if cfg.steps > 0:
        return cfg.steps, math.ceil(cfg.steps / steps_per_epoch)
    return cfg.epochs * steps_per_epoch, cfg.epochs


def jit_flag(cfg):
    return {"auto": "auto", "on": True, "off": False}[cfg.jit_compile]


def compile_model(model, cfg, loss, total_steps, steps_per_epoch, metrics=None,
                  loss_weights=None):
    """Compile ``model`` with the configured schedule and optimizer.

    Returns:
        the learning-rate schedule.
    """
    schedule = make_schedule(cfg, total_steps, steps_per_epoch)
    optimizer = optimizer_from_config(cfg, schedule, model.trainable_variables)
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics, loss_weights=loss_weights,
                  jit_compile=jit_flag(cfg))
    return schedule


def log_event(out_dir, **event):
    """Append one JSON line to ``out/events.jsonl`` (start, resume, epoch, end)."""
    event = {"time": round(time.time(), 3), **event}
    with open(Path(out_dir) / EVENTS_FILE, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(event, default=float) + "\n")


def optimizer_iterations(model):
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


@dataclass
class FitResult:
    """What a run did: steps, epochs, the last logs, verification history, timing."""

    start_step: int
    step: int
    epochs: int
    total_steps: int
    logs: dict
    verification: list
    seconds: float
    images_per_second: float
    resumed: bool

    def metrics(self):
        out = {k: float(v) for k, v in self.logs.items()}
        if self.verification:
            out.update({k: v for k, v in self.verification[-1].items() if k != "epoch"})
        return out


def fit(cfg, model, data, *, program, embedder=None, pair_set=None, pair_images=None,
        extra_state=None, on_restore=None, config_extra=None):
    """Train ``model`` per ``cfg`` with checkpoints and resume. See the module docstring.

    Args:
        cfg: the program's config dataclass.
        model: compiled training model.
        data: :class:`TrainData`.
        program: "arcface", "triplet" or "distill" (for logs and config.json).
        embedder: the backbone (for the verification callback).
        pair_set, pair_images: ``eval.pairs.PairSet`` and its uint8 crops, or None.
        extra_state: callable -> JSON dict saved in each checkpoint.
        on_restore: callable(saved_state_dict) run after a checkpoint is loaded.
        config_extra: more JSON for config.json (e.g. number of classes).
    Returns:
        :class:`FitResult`.
    """
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    spe = int(data.steps_per_epoch)
    total, _ = plan_steps(cfg, spe)
    save_config(cfg, out, program, {"env": cb.env_info(), "steps_per_epoch": spe,
                                    "total_steps": total, **(config_extra or {})})

    # 1. Resume.
    manager = CheckpointManager(out, model, keep=cfg.keep_checkpoints)
    if not cfg.resume and (out / CHECKPOINT_DIR).exists():
        shutil.rmtree(out / CHECKPOINT_DIR)  # --no-resume: start over in this folder
    saved = manager.restore() if cfg.resume else None
    start = 0
    if saved is not None:
        start = int(saved["step"])
        if on_restore is not None:
            on_restore(saved)
    state = cb.TrainState(step=start, epoch=start // spe, step_in_epoch=start % spe,
                          steps_per_epoch=spe, total_steps=total)
    iters = optimizer_iterations(model) if model.optimizer.built else 0
    log_event(out, event="resume" if saved else "start", step=start, epoch=state.epoch,
              step_in_epoch=state.step_in_epoch, optimizer_iterations=iters,
              total_steps=total, steps_per_epoch=spe, backend=keras.backend.backend())
    if saved is not None:
        tqdm.write(f"{program}: resuming from step {start} (epoch {state.epoch + 1}, "
                   f"batch {state.step_in_epoch}); optimizer at iteration {iters}",
                   file=sys.stderr)
    if start >= total:
        tqdm.write(f"{program}: already trained to step {start} of {total}", file=sys.stderr)

    # 2. Callbacks: the counter first; verification before the logger so it sees val_*.
    verification = None
    callbacks = [cb.StepCounter(state), keras.callbacks.TerminateOnNaN()]
    if pair_set is not None and embedder is not None:
        verification = cb.VerificationCallback(embedder, pair_set, pair_images,
                                               every=cfg.verify_every)
        callbacks.append(verification)
    logger = cb.ScalarLogger(out / "logs", state, every=cfg.log_every)
    ckpt = cb.CheckpointCallback(manager, state, cfg.checkpoint_every, seed=cfg.seed,
                                 extra_state=extra_state)
    ckpt.last_saved = start if saved is not None else -1
    progress = cb.ProgressBar(state, enabled=cfg.progress)
    callbacks += [logger, ckpt, progress]

    # 3. Epoch by epoch; the first may be a resumed, partial one.
    t0, done0 = time.time(), state.step
    try:
        while state.step < total:
            epoch, skip = state.epoch, state.step_in_epoch
            n = min(spe - skip, total - state.step)
            history = model.fit(data.batches(epoch, skip), epochs=epoch + 1,
                                initial_epoch=epoch, steps_per_epoch=n, callbacks=callbacks,
                                shuffle=False, verbose=0)
            if model.stop_training or not history.history:
                raise DataError(f"{program}: training stopped at step {state.step} (NaN loss "
                                "or no batches); try a lower --lr")
            if state.step_in_epoch >= spe:
                state.epoch, state.step_in_epoch = epoch + 1, 0
            log_event(out, event="epoch", epoch=epoch + 1, step=state.step,
                      **{k: v for k, v in state.last_epoch_logs.items()})
    finally:
        progress.close()
        logger.close()
    seconds = time.time() - t0
    images = (state.step - done0) * cfg.batch_size
    result = FitResult(start_step=start, step=state.step, epochs=state.epoch, total_steps=total,
                       logs=dict(state.last_epoch_logs or state.last_logs),
                       verification=verification.history if verification else [],
                       seconds=round(seconds, 2),
                       images_per_second=round(images / seconds, 2) if seconds > 0 else 0.0,
                       resumed=saved is not None)
    skipped = getattr(data.skipped, "count", 0) if data.skipped is not None else 0
    log_event(out, event="end", step=state.step, seconds=result.seconds,
              images_per_second=result.images_per_second, skipped_images=skipped)
    return result


def describe_config(cfg):
    """Short one-line summary of a config for the start message."""
    d = to_dict(cfg)
    keys = ("backbone", "embedding_size", "batch_size", "optimizer", "lr", "lr_schedule")
    return ", ".join(f"{k}={d[k]}" for k in keys if k in d)


def set_seed(seed):
    """Seed Python, numpy and the Keras backend RNGs."""
    keras.utils.set_random_seed(int(seed))
    return np.random.default_rng(int(seed))
