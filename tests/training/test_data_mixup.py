"""Mixup for function-matching distillation, against a per-row least-squares reference."""

import numpy as np

from training.data.mixup import batch_rng, mix_batch

IMAGES = np.random.default_rng(0).normal(size=(16, 8, 8, 3)).astype(np.float32)
LABELS = np.arange(16, dtype=np.int32) % 5 - 1  # some -1 (unlabelled)


def explain(row, images):
    """The (partner, weight, residual) that best writes ``row`` as w*x_i + (1-w)*x_j."""
    best = None
    for i in range(len(images)):
        for j in range(len(images)):
            d = (images[i] - images[j]).ravel()
            t = (row - images[j]).ravel()
            w = float(d @ t / (d @ d)) if d @ d > 0 else 1.0
            res = np.abs(w * images[i] + (1 - w) * images[j] - row).max()
            if best is None or res < best[3]:
                best = (i, j, w, res)
    return best


def test_every_row_is_a_convex_blend_and_blends_lose_their_label():
    out, labels = mix_batch(IMAGES, LABELS, alpha=1.0, prob=1.0, rng=np.random.default_rng(3))
    assert out.shape == IMAGES.shape and out.dtype == np.float32
    blended = 0
    for k in range(len(out)):
        if np.allclose(out[k], IMAGES[k]):
            assert labels[k] == LABELS[k]
            continue
        i, j, w, res = explain(out[k], IMAGES)
        assert res < 1e-4 and -1e-4 <= w <= 1 + 1e-4
        assert k in (i, j)  # one side of the blend is the row's own image
        assert labels[k] == -1
        blended += 1
    assert blended >= 12


def test_prob_sets_the_blended_fraction():
    rng = np.random.default_rng(5)
    changed = [int((~np.all(np.isclose(mix_batch(IMAGES, LABELS, 1.0, 0.25, rng)[0], IMAGES),
                           axis=(1, 2, 3))).sum()) for _ in range(200)]
    assert 0.15 * 16 < np.mean(changed) < 0.3 * 16
    same, _ = mix_batch(IMAGES, LABELS, 1.0, 1e-9, rng)
    assert np.array_equal(same, IMAGES)


def test_batch_rng_is_a_function_of_the_pixels():
    a = mix_batch(IMAGES, LABELS, 1.0, 0.5, batch_rng(IMAGES))[0]
    b = mix_batch(IMAGES, LABELS, 1.0, 0.5, batch_rng(IMAGES.copy()))[0]
    c = mix_batch(IMAGES, LABELS, 1.0, 0.5, batch_rng(IMAGES[::-1]))[0]
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c[::-1])
