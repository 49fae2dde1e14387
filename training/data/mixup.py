"""Mixup for function-matching distillation (Beyer et al. 2022, "Knowledge distillation: a
good teacher is patient and consistent").

With a teacher *model*, a blend of two faces is a valid training input: its target is simply
the teacher's embedding of the blend. Blends fill the space between the few thousand faces we
have, which is where a small data set leaves a student free to disagree with its teacher.
Only a fraction of each batch is blended, so the student still sees plain faces, the only
kind it meets at test time.
"""

import zlib

import numpy as np


def batch_rng(images):
    """A generator seeded by the batch's own pixels: the batches are a pure function of
    (seed, epoch, position), so the blends are too, and a resumed run repeats them."""
    arr = np.ascontiguousarray(np.asarray(images)[:, ::8, ::8])
    return np.random.default_rng(zlib.crc32(arr.tobytes()))


def mix_batch(images, labels, alpha, prob, rng):
    """Blend a random fraction of a batch with other images of the same batch.

    Args:
        images: float (B, H, W, C) normalised faces (blending is linear, so blending
            normalised pixels equals normalising blended pixels).
        labels: int (B,) identity labels (-1 unlabelled).
        alpha: Beta(alpha, alpha) concentration of the blend weight.
        prob: fraction of rows to blend.
        rng: numpy Generator.
    Returns:
        (blended float32 images (B, H, W, C), int32 labels with -1 for blended rows, since a
        blend of two people has no single identity).
    """
    images = np.asarray(images, dtype=np.float32)
    labels = np.array(labels, dtype=np.int32)
    n = len(images)
    mixed = rng.random(n) < prob
    partner = rng.permutation(n)
    lam = rng.beta(alpha, alpha, size=n).astype(np.float32)
    # A row blended with itself is unchanged; keep its label.
    mixed &= partner != np.arange(n)
    w = np.where(mixed, lam, 1.0).astype(np.float32)[:, None, None, None]
    out = w * images + (1.0 - w) * images[partner]
    labels[mixed] = -1
    return out.astype(np.float32), labels
