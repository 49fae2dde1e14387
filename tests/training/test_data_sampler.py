"""P x K batch composition, seeding and small-identity handling."""

from collections import Counter

import numpy as np
import pytest

from tfface.errors import DataError
from training.data.sampler import PKSampler


def make_labels():
    # 12 identities with 2..13 images each, shuffled positions, plus unlabelled (-1) rows
    rng = np.random.default_rng(0)
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(range(2, 14))] + [[-1] * 5])
    return rng.permutation(labels)


@pytest.mark.parametrize("p,k", [(4, 4), (3, 2), (5, 3)])
def test_every_batch_is_p_identities_times_k(p, k):
    labels = make_labels()
    sampler = PKSampler(labels, p, k, seed=3)
    eligible = {c for c, n in Counter(labels[labels >= 0].tolist()).items() if n >= k}
    batches = sampler.epoch(0)
    usable = sum(n for c, n in Counter(labels.tolist()).items() if c in eligible)
    assert len(batches) == len(sampler) == usable // (p * k)
    for batch in batches:
        assert batch.shape == (p * k,)
        counts = Counter(labels[batch].tolist())
        assert len(counts) == p and set(counts.values()) == {k}
        assert set(counts) <= eligible
        assert len(set(batch.tolist())) == p * k  # no image twice without oversampling
        for j in range(p):  # identity-major order: K consecutive indices per identity
            assert len(set(labels[batch[j * k:(j + 1) * k]].tolist())) == 1
    assert sorted(sampler.excluded) == sorted(set(range(12)) - eligible)


def test_seeded_and_epochs_differ():
    labels = make_labels()
    a, b = PKSampler(labels, 4, 2, seed=1), PKSampler(labels, 4, 2, seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a.epoch(5), b.epoch(5)))
    assert not all(np.array_equal(x, y) for x, y in zip(a.epoch(0), a.epoch(1)))
    assert not all(np.array_equal(x, y)
                   for x, y in zip(a.epoch(0), PKSampler(labels, 4, 2, seed=2).epoch(0)))


def test_images_used_evenly_within_identity():
    labels = np.repeat(np.arange(4), 8)  # 4 identities x 8 images, P=2 K=4: 4 batches
    seen = Counter(np.concatenate(PKSampler(labels, 2, 4, seed=0).epoch(0)).tolist())
    assert set(seen.values()) == {1} and len(seen) == 32  # each image exactly once


def test_oversampling_small_identities():
    labels = np.array([0] * 5 + [1] * 2 + [2] * 1 + [3] * 6)
    with pytest.raises(DataError, match="at least 4 identities"):
        PKSampler(labels, 4, 3)
    sampler = PKSampler(labels, 4, 3, oversample=True, seed=0)
    assert sampler.excluded == []
    for batch in sampler.epoch(0):
        counts = Counter(labels[batch].tolist())
        assert len(counts) == 4 and set(counts.values()) == {3}


def test_bad_arguments():
    with pytest.raises(DataError):
        PKSampler([0, 1], 1, 2)
