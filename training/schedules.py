"""Learning-rate schedules: linear warm-up followed by cosine decay or piecewise-constant drops.

Both are ``keras.optimizers.schedules.LearningRateSchedule`` subclasses written with
``keras.ops`` (so they run inside jitted JAX and TF train steps) and serialise with the model's
optimizer. The step they receive is the optimizer's iteration count, which is saved in every
checkpoint, so a resumed run continues the schedule where it stopped.
"""

import math

import keras
from keras import ops


def _warmup(step, base_lr, warmup_steps, start_ratio):
    """LR during warm-up: linear from ``start_ratio * base_lr`` to ``base_lr``."""
    frac = step / max(float(warmup_steps), 1.0)
    return base_lr * (start_ratio + (1.0 - start_ratio) * frac)


@keras.saving.register_keras_serializable(package="tfface")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up then half-cosine decay (Loshchilov & Hutter, "SGDR", 2017; warm-up as in
    Goyal et al., "Accurate, Large Minibatch SGD", 2017).

    ``lr(t) = base_lr * (r + (1 - r) t / W)`` for ``t < W``; then
    ``min_lr + (base_lr - min_lr) * (1 + cos(pi * p)) / 2`` with
    ``p = min(1, (t - W) / (T - W))`` and ``min_lr = base_lr * min_lr_ratio``.

    Args:
        base_lr: peak learning rate (float > 0).
        total_steps: T, steps of the whole run (int > 0).
        warmup_steps: W, linear warm-up steps (0 <= W < T).
        min_lr_ratio: final LR as a fraction of the peak.
        warmup_start_ratio: r, the LR at step 0 as a fraction of the peak.
    """

    def __init__(self, base_lr, total_steps, warmup_steps=0, min_lr_ratio=0.0,
                 warmup_start_ratio=0.0, name="warmup_cosine"):
        super().__init__()
        if base_lr <= 0:
            raise ValueError(f"base_lr must be positive; received base_lr={base_lr}")
        if total_steps <= 0:
            raise ValueError(f"total_steps must be positive; received total_steps={total_steps}")
        if not 0 <= warmup_steps < total_steps:
            raise ValueError(f"warmup_steps must be in [0, total_steps); received "
                             f"warmup_steps={warmup_steps}, total_steps={total_steps}")
        self.base_lr = float(base_lr)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.min_lr_ratio = float(min_lr_ratio)
        self.warmup_start_ratio = float(warmup_start_ratio)
        self.name = name

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warm = float(self.warmup_steps)
        min_lr = self.base_lr * self.min_lr_ratio
        span = max(float(self.total_steps - self.warmup_steps), 1.0)
        progress = ops.clip((step - warm) / span, 0.0, 1.0)
        cosine = min_lr + (self.base_lr - min_lr) * 0.5 * (1.0 + ops.cos(math.pi * progress))
        if self.warmup_steps == 0:
            return cosine
        warmup = _warmup(step, self.base_lr, warm, self.warmup_start_ratio)
        return ops.where(step < warm, warmup, cosine)

    def get_config(self):
        return {
            "base_lr": self.base_lr,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "min_lr_ratio": self.min_lr_ratio,
            "warmup_start_ratio": self.warmup_start_ratio,
            "name": self.name,
        }


@keras.saving.register_keras_serializable(package="tfface")
class WarmupPiecewise(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up then piecewise-constant decay (the ResNet/ArcFace "step" schedule).

    After warm-up the LR is ``base_lr * decay ** k`` where k is the number of boundaries
    ``<= step``.

    Args:
        base_lr: peak learning rate (float > 0).
        boundaries: increasing step numbers where the LR is multiplied by ``decay``.
        decay: factor per boundary (e.g. 0.1).
        warmup_steps: linear warm-up steps (before the first boundary).
        warmup_start_ratio: the LR at step 0 as a fraction of the peak.
    """

    def __init__(self, base_lr, boundaries, decay=0.1, warmup_steps=0, warmup_start_ratio=0.0,
                 name="warmup_piecewise"):
        super().__init__()
        boundaries = [int(b) for b in boundaries]
        if base_lr <= 0:
            raise ValueError(f"base_lr must be positive; received base_lr={base_lr}")
        if boundaries != sorted(boundaries) or len(set(boundaries)) != len(boundaries):
            raise ValueError(f"boundaries must be strictly increasing; received {boundaries}")
        self.base_lr = float(base_lr)
        self.boundaries = boundaries
        self.decay = float(decay)
        self.warmup_steps = int(max(warmup_steps, 0))
        self.warmup_start_ratio = float(warmup_start_ratio)
        self.name = name

    def __call__(self, step):
        step = ops.cast(step, "float32")
        count = ops.zeros((), "float32")
        for b in self.boundaries:
            count = count + ops.cast(step >= float(b), "float32")
        lr = self.base_lr * ops.power(self.decay, count)
        if self.warmup_steps == 0:
            return lr
        warm = float(self.warmup_steps)
        warmup = _warmup(step, self.base_lr, warm, self.warmup_start_ratio)
        return ops.where(step < warm, warmup, lr)

    def get_config(self):
        return {
            "base_lr": self.base_lr,
            "boundaries": list(self.boundaries),
            "decay": self.decay,
            "warmup_steps": self.warmup_steps,
            "warmup_start_ratio": self.warmup_start_ratio,
            "name": self.name,
        }


SCHEDULES = ("cosine", "piecewise", "constant")


def make_schedule(cfg, total_steps, steps_per_epoch):
    """The schedule a training config asks for.

    Args:
        cfg: a ``training.config.CommonConfig`` (lr, lr_schedule, warmup_epochs,
            lr_milestones, lr_decay, min_lr_ratio).
        total_steps: steps of the whole run.
        steps_per_epoch: steps in one epoch (warm-up is given in epochs).
    Returns:
        a LearningRateSchedule (``constant`` is a piecewise schedule without boundaries, so it
        still warms up).
    """
    if cfg.lr_schedule not in SCHEDULES:
        raise ValueError(f"unknown lr schedule {cfg.lr_schedule!r}; choose from {SCHEDULES}")
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    warmup = min(warmup, max(total_steps - 1, 0))
    if cfg.lr_schedule == "cosine":
        return WarmupCosine(cfg.lr, total_steps, warmup, cfg.min_lr_ratio)
    if cfg.lr_schedule == "piecewise":
        bounds = sorted({max(round(m * total_steps), warmup + 1) for m in cfg.lr_milestones})
        return WarmupPiecewise(cfg.lr, bounds, cfg.lr_decay, warmup)
    return WarmupPiecewise(cfg.lr, [], 1.0, warmup)
