"""Identity-balanced P x K batches for triplet training (FaceNet; Hermans et al. 2017).

Every batch holds P different identities with K images each, so each anchor has K-1
positives and (P-1)K negatives in the batch for online (semi-)hard mining.
"""

import numpy as np

from tfface.errors import DataError


class PKSampler:
    """Seeded P x K batch sampler over integer labels.

    Args:
        labels: int (N,) identity per image; negative labels (unlabelled) are ignored.
        p: identities per batch.
        k: images per identity.
        seed: base seed; epoch ``e`` is a pure function of ``(seed, e)``, so a resumed run
            sees the same batches as an uninterrupted one.
        oversample: identities with fewer than ``k`` images are used with their images
            repeated (drawn with replacement). When False (default) they are left out and
            listed in ``excluded``.

    Within an epoch identities are visited in a shuffled order, P at a time (a new shuffle
    starts when fewer than P are left, never repeating one inside a batch), and each
    identity's images are consumed from its own shuffled queue, K at a time, so every image
    is seen about equally often. An epoch has ``len(sampler)`` = usable images // (P*K)
    batches. Batches are ordered identity-major: K consecutive indices per identity.
    """

    def __init__(self, labels, p, k, seed=0, oversample=False):
        labels = np.asarray(labels, dtype=np.int64)
        if p < 2 or k < 1:
            raise DataError(f"P x K sampling needs p >= 2 and k >= 1; received p={p}, k={k}")
        self.p, self.k, self.seed, self.oversample = int(p), int(k), int(seed), bool(oversample)
        classes, counts = np.unique(labels[labels >= 0], return_counts=True)
        order = np.argsort(labels, kind="stable")
        starts = np.searchsorted(labels[order], classes)
        groups = [order[s:s + c] for s, c in zip(starts, counts)]
        keep = counts >= (1 if oversample else k)
        self.excluded = classes[~keep].tolist()
        self.classes = classes[keep]
        self.groups = [g for g, ok in zip(groups, keep) if ok]
        if len(self.classes) < self.p:
            raise DataError(
                f"P x K sampling with p={p}, k={k} needs at least {p} identities with "
                f"{k if not oversample else 1}+ images; found {len(self.classes)}"
                + ("" if oversample else " (oversample=True reuses images of small identities)"))
        self.num_images = int(sum(len(g) for g in self.groups))

    @property
    def batch_size(self):
        return self.p * self.k

    def __len__(self):
        return max(1, self.num_images // self.batch_size)

    def epoch(self, epoch):
        """The batches of one epoch: list of int64 (P*K,) image-index arrays."""
        rng = np.random.default_rng([self.seed, int(epoch)])
        queues = [rng.permutation(g) for g in self.groups]
        heads = [0] * len(self.groups)
        id_order, id_pos = rng.permutation(len(self.groups)), 0
        batches = []
        for _ in range(len(self)):
            if id_pos + self.p > len(id_order):
                rest = id_order[id_pos:]
                fresh = rng.permutation(np.setdiff1d(np.arange(len(self.groups)), rest))
                id_order, id_pos = np.concatenate([rest, fresh]), 0
            chosen = id_order[id_pos:id_pos + self.p]
            id_pos += self.p
            batch = []
            for c in chosen:
                group = self.groups[c]
                if len(group) < self.k:  # only reached with oversample=True
                    batch.append(rng.choice(group, self.k, replace=True))
                    continue
                if heads[c] + self.k > len(group):
                    left = queues[c][heads[c]:]
                    queues[c] = np.concatenate([left, rng.permutation(np.setdiff1d(group, left))])
                    heads[c] = 0
                batch.append(queues[c][heads[c]:heads[c] + self.k])
                heads[c] += self.k
            batches.append(np.concatenate(batch).astype(np.int64))
        return batches
