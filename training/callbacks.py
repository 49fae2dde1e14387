"""Keras callbacks of the training programs: step counting, scalar logs (TensorBoard and CSV),
a tqdm progress bar, periodic checkpoints and a verification callback on a pairs file.

``keras.callbacks.TensorBoard`` needs TensorFlow, which the GPU machines (Keras on JAX) lack,
so :class:`ScalarLogger` always writes ``logs/scalars.csv`` and adds TensorBoard event files
through ``tf.summary`` only where TensorFlow can be imported.

On the JAX backend the variables live in the jitted train state during ``fit``; reading
``self.model`` in a callback syncs them back (Keras' ``jax_state_sync``), so the checkpoint
and verification callbacks always see the current weights.
"""

import csv
import math
import os
import sys
import time
from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm

from training.checkpoint import rng_state


class TrainState:
    """Counters shared by the callbacks and the fit driver (global step, epoch position)."""

    def __init__(self, step=0, epoch=0, step_in_epoch=0, steps_per_epoch=1, total_steps=1):
        self.step = int(step)
        self.epoch = int(epoch)
        self.step_in_epoch = int(step_in_epoch)
        self.steps_per_epoch = int(steps_per_epoch)
        self.total_steps = int(total_steps)
        self.last_logs = {}
        self.last_epoch_logs = {}


class StepCounter(keras.callbacks.Callback):
    """Advances :class:`TrainState` after every batch; must come first in the callback list."""

    def __init__(self, state):
        super().__init__()
        self.state = state

    def on_epoch_begin(self, epoch, logs=None):
        self.state.epoch = int(epoch)

    def on_train_batch_end(self, batch, logs=None):
        s = self.state
        s.step += 1
        s.step_in_epoch += 1
        s.last_logs = dict(logs or {})

    def on_epoch_end(self, epoch, logs=None):
        s = self.state
        s.last_epoch_logs = dict(logs or {})
        if s.step_in_epoch >= s.steps_per_epoch:
            s.epoch = int(epoch) + 1
            s.step_in_epoch = 0


def current_lr(optimizer):
    """The optimizer's learning rate at its current iteration, as a float."""
    lr = optimizer.learning_rate
    return float(keras.ops.convert_to_numpy(lr))


def _scalars(logs):
    out = {}
    for k, v in (logs or {}).items():
        try:
            value = float(np.asarray(v))
        except (TypeError, ValueError):
            continue
        if math.isfinite(value) or math.isnan(value):
            out[k] = value
    return out


class ScalarLogger(keras.callbacks.Callback):
    """Scalars to ``log_dir/scalars.csv`` and, with TensorFlow present, TensorBoard events.

    Step scalars (loss, accuracy, lr) every ``every`` steps under ``train/``; epoch scalars
    (means over the epoch, verification results) under ``epoch/``.

    Args:
        log_dir: folder for ``scalars.csv`` and ``train/`` event files.
        state: the run's :class:`TrainState`.
        every: steps between step scalars.
    """

    def __init__(self, log_dir, state, every=20):
        super().__init__()
        self.log_dir = Path(log_dir)
        self.state = state
        self.every = int(every)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._csv_path = self.log_dir / "scalars.csv"
        new = not self._csv_path.exists()
        self._fh = open(self._csv_path, "a", newline="")  # noqa: SIM115 (closed in close())
        self._csv = csv.writer(self._fh)
        if new:
            self._csv.writerow(["wall_time", "step", "tag", "value"])
        self._writer = None
        try:
            import tensorflow as tf  # optional: absent on the JAX-only GPU machines
            from tensorflow.core.framework import summary_pb2

            self._tf = tf
            self._writer = tf.summary.create_file_writer(str(self.log_dir / "train"))
            # tf.summary.scalar lives in the tensorboard package (often not installed); the
            # low-level tf.summary.write with the scalars plugin's metadata writes the same
            # event TensorBoard reads.
            self._metadata = summary_pb2.SummaryMetadata()
            self._metadata.plugin_data.plugin_name = "scalars"
        except ImportError:
            self._tf = None

    def write(self, prefix, scalars, step):
        now = time.time()
        for tag, value in scalars.items():
            self._csv.writerow([f"{now:.3f}", step, f"{prefix}/{tag}", f"{value:.6g}"])
        self._fh.flush()
        if self._writer is not None:
            with self._writer.as_default():
                for tag, value in scalars.items():
                    self._tf.summary.write(f"{prefix}/{tag}", self._tf.constant(value, "float32"),
                                           step=step, metadata=self._metadata)
            self._writer.flush()

    def on_train_batch_end(self, batch, logs=None):
        step = self.state.step
        if step % self.every == 0:
            scalars = _scalars(logs)
            scalars["lr"] = current_lr(self.model.optimizer)
            self.write("train", scalars, step)

    def on_epoch_end(self, epoch, logs=None):
        self.write("epoch", _scalars(logs), self.state.step)

    def close(self):
        if self._writer is not None:
            self._writer.close()
        self._fh.close()


class ProgressBar(keras.callbacks.Callback):
    """One tqdm bar over the whole run (resumed runs start at their saved step)."""

    def __init__(self, state, enabled=True):
        super().__init__()
        self.state = state
        self.bar = tqdm(total=state.total_steps, initial=state.step, unit="step",
                        file=sys.stderr, disable=not enabled, dynamic_ncols=True)

    def on_train_batch_end(self, batch, logs=None):
        self.bar.update(1)
        if self.state.step % 10 == 0:
            post = {k: f"{v:.4g}" for k, v in _scalars(logs).items()}
            post["epoch"] = self.state.epoch + 1
            self.bar.set_postfix(post, refresh=False)

    def close(self):
        self.bar.close()


class CheckpointCallback(keras.callbacks.Callback):
    """Saves a checkpoint every ``every`` steps and at each epoch end.

    Args:
        manager: :class:`training.checkpoint.CheckpointManager`.
        state: the run's :class:`TrainState`.
        every: steps between checkpoints.
        extra_state: callable returning a JSON-ready dict stored with each checkpoint.
        rng: optional numpy Generator whose state is stored.
    """

    def __init__(self, manager, state, every, seed=0, extra_state=None, rng=None):
        super().__init__()
        self.manager = manager
        self.state = state
        self.every = int(every)
        self.seed = int(seed)
        self.extra_state = extra_state
        self.rng = rng
        self.last_saved = -1

    def snapshot(self):
        s = self.state
        doc = {"step": s.step, "epoch": s.epoch, "step_in_epoch": s.step_in_epoch,
               "steps_per_epoch": s.steps_per_epoch, "total_steps": s.total_steps,
               "seed": self.seed, "time": time.time(),
               "logs": _scalars(s.last_logs)}
        if self.rng is not None:
            doc["rng"] = rng_state(self.rng)
        if self.extra_state is not None:
            doc["extra"] = self.extra_state()
        return doc

    def save(self):
        if self.state.step == self.last_saved:
            return
        _ = self.model  # on JAX this syncs the jitted state back into the variables
        self.manager.save(self.snapshot())
        self.last_saved = self.state.step

    def on_train_batch_end(self, batch, logs=None):
        if self.state.step % self.every == 0:
            self.save()

    def on_epoch_end(self, epoch, logs=None):
        self.save()


class VerificationCallback(keras.callbacks.Callback):
    """Verification accuracy of the embedding model on a pairs file, every N epochs.

    Embeds each unique image (and its mirror image: the two embeddings are summed, as in
    insightface's evaluation), scores pairs by cosine similarity and adds ``val_accuracy``,
    ``val_threshold`` and the other :func:`eval.metrics.verification_metrics` scalars to the
    epoch logs (so :class:`ScalarLogger` records them).

    Args:
        embedder: the backbone (images -> embeddings), without the head.
        pair_set: ``eval.pairs.PairSet``.
        images: uint8 RGB (M, S, S, 3), one aligned crop per ``pair_set.keys`` entry.
        every: epochs between evaluations.
        batch_size: images per forward pass.
    """

    def __init__(self, embedder, pair_set, images, every=1, batch_size=64):
        super().__init__()
        self.embedder = embedder
        self.pair_set = pair_set
        self.images = images
        self.every = int(every)
        self.batch_size = int(batch_size)
        self.history = []

    def evaluate(self):
        from eval.metrics import verification_metrics
        from tfface.core.preprocess import normalize_face

        _ = self.model  # sync JAX state into the shared backbone variables
        feats = []
        for i in range(0, len(self.images), self.batch_size):
            x = normalize_face(self.images[i:i + self.batch_size])
            e = keras.ops.convert_to_numpy(self.embedder(x, training=False))
            e = e + keras.ops.convert_to_numpy(self.embedder(x[:, :, ::-1], training=False))
            feats.append(e.astype(np.float64))
        emb = np.concatenate(feats)
        emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        ps = self.pair_set
        scores = np.sum(emb[ps.left] * emb[ps.right], axis=1)
        result = verification_metrics(scores, ps.issame, folds=ps.folds)
        return verification_scalars(result)

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        result = self.evaluate()
        self.history.append({"epoch": epoch + 1, **result})
        if logs is not None:
            logs.update(result)
        acc = result.get("val_accuracy")
        if acc is not None:
            tqdm.write(f"epoch {epoch + 1}: verification accuracy {acc:.4f} on "
                       f"{len(self.pair_set.issame)} pairs", file=sys.stderr)


def verification_scalars(result):
    """Flat ``val_*`` scalars from :func:`eval.metrics.verification_metrics`' dict:
    ``val_accuracy`` (10-fold mean), ``val_accuracy_std``, ``val_threshold`` (mean fold
    threshold), ``val_auc``, ``val_eer`` and ``val_tar_at_far_<far>``."""
    out = {"val_accuracy": result["accuracy_mean"], "val_accuracy_std": result["accuracy_std"],
           "val_threshold": result["threshold_mean"]}
    for key in ("auc", "eer", "best_accuracy"):
        if key in result:
            out[f"val_{key}"] = result[key]
    for far, entry in (result.get("tar_at_far") or {}).items():
        tar = entry.get("tar") if isinstance(entry, dict) else entry
        if tar is not None and np.ndim(tar) == 0:
            out[f"val_tar_at_far_{far}"] = tar
    return {k: float(v) for k, v in out.items()}


def load_pair_images(pair_set, size):
    """Aligned crops for every image of a pair set, resized to ``size`` if needed.

    Args:
        pair_set: ``eval.pairs.PairSet`` (paths in ``keys`` or bytes in ``encoded``).
        size: model input side in pixels.
    Returns:
        uint8 RGB (M, size, size, 3).
    """
    from eval.align_cache import load_aligned

    encoded = getattr(pair_set, "encoded", None)
    out = np.empty((len(pair_set.keys), size, size, 3), np.uint8)
    for i, key in enumerate(tqdm(pair_set.keys, desc="pairs images", unit="img",
                                 file=sys.stderr, leave=False)):
        src = encoded[i] if encoded is not None else key
        out[i] = load_aligned(src, size)
    return out


def env_info():
    """Backend and device description for logs and model cards."""
    info = {"keras": keras.__version__, "backend": keras.backend.backend(),
            "pid": os.getpid()}
    try:
        if info["backend"] == "jax":
            import jax

            info["devices"] = [str(d) for d in jax.devices()]
        elif info["backend"] == "tensorflow":
            import tensorflow as tf

            info["devices"] = [d.name for d in tf.config.list_logical_devices()]
    except ImportError:
        pass
    return info
