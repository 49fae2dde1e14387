"""Losses against plain numpy loop implementations written here (not copies of the code)."""

import keras
import numpy as np
import pytest

from tests.training.backend_utils import gradient
from training import losses


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _dist(e, squared):
    """Distance matrix by explicit pairs, float64."""
    n = len(e)
    d = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            diff = e[i].astype(np.float64) - e[j].astype(np.float64)
            d[i, j] = diff @ diff if squared else np.sqrt(diff @ diff)
    return d


def ref_semi_hard(labels, e, margin, squared):
    """FaceNet semi-hard mining as TF-Addons defines it, one anchor-positive pair at a time."""
    d = _dist(e, squared)
    n = len(labels)
    total, pairs = 0.0, 0
    for a in range(n):
        negatives = [k for k in range(n) if labels[k] != labels[a]]
        for p in range(n):
            if p == a or labels[p] != labels[a]:
                continue
            pairs += 1
            semi_hard = [d[a, k] for k in negatives if d[a, k] > d[a, p]]
            if semi_hard:
                neg = min(semi_hard)
            elif negatives:
                neg = max(d[a, k] for k in negatives)
            else:
                neg = 0.0  # TF-Addons: masked maximum over nothing is the row minimum, d[a, a]
            total += max(margin + d[a, p] - neg, 0.0)
    return total / pairs if pairs else 0.0


def ref_batch_hard(labels, e, margin, squared, soft):
    d = _dist(e, squared)
    n = len(labels)
    values = []
    for a in range(n):
        pos = [d[a, p] for p in range(n) if p != a and labels[p] == labels[a]]
        neg = [d[a, k] for k in range(n) if labels[k] != labels[a]]
        if not pos or not neg:
            continue
        gap = max(pos) - min(neg)
        values.append(np.log1p(np.exp(gap)) if soft else max(gap + margin, 0.0))
    return float(np.mean(values)) if values else 0.0


def ref_distillation(student, teacher, kind):
    out = []
    for s, t in zip(student.astype(np.float64), teacher.astype(np.float64)):
        if kind == "l2":
            out.append(sum((si - ti) ** 2 for si, ti in zip(s, t)))
        else:
            out.append(1.0 - (s @ t) / (np.linalg.norm(s) * np.linalg.norm(t)))
    return float(np.mean(out))


# Label sets: ordinary PxK; singletons (anchors with no positive); all one identity (no
# negatives); no positive pair at all.
LABEL_SETS = {
    "pk": np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]),
    "singletons": np.array([0, 0, 1, 2, 3, 3, 3, 4, 5, 6]),
    "one_identity": np.array([7, 7, 7, 7, 7]),
    "no_pairs": np.array([0, 1, 2, 3, 4, 5]),
}


@pytest.mark.parametrize("label_set", sorted(LABEL_SETS))
@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("margin", [0.2, 1.0])
def test_semi_hard_matches_reference(label_set, squared, margin):
    labels = LABEL_SETS[label_set]
    rng = np.random.default_rng(len(labels) + int(squared))
    e = _unit(rng.normal(size=(len(labels), 8))).astype(np.float32)
    got = float(losses.semi_hard_triplet_loss(labels, e, margin=margin, squared=squared))
    np.testing.assert_allclose(got, ref_semi_hard(labels, e, margin, squared), atol=1e-5)


def test_semi_hard_when_no_semi_hard_negative_exists():
    # Each positive is farther than every negative, so the farthest negative is used.
    labels = np.array([0, 0, 1, 1])
    e = _unit(np.array([[1.0, 0.0], [-1.0, 0.05], [0.9, 0.3], [0.8, -0.4]])).astype(np.float32)
    d = _dist(e, False)
    assert d[0, 1] > max(d[0, 2], d[0, 3])  # the case being tested
    got = float(losses.semi_hard_triplet_loss(labels, e, margin=0.5))
    np.testing.assert_allclose(got, ref_semi_hard(labels, e, 0.5, False), atol=1e-5)
    # Anchor 0's term, by hand: margin + d(0, 1) - the farthest negative of anchor 0.
    assert got > 0.0


def test_semi_hard_zero_when_well_separated():
    labels = np.array([0, 0, 1, 1])
    e = np.array([[1, 0], [1, 0.01], [-1, 0], [-1, 0.01]], dtype=np.float32)
    assert float(losses.semi_hard_triplet_loss(labels, _unit(e), margin=0.2)) == 0.0


@pytest.mark.parametrize("label_set", sorted(LABEL_SETS))
@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("soft", [False, True])
def test_batch_hard_matches_reference(label_set, squared, soft):
    labels = LABEL_SETS[label_set]
    rng = np.random.default_rng(3 + len(labels))
    e = _unit(rng.normal(size=(len(labels), 8))).astype(np.float32)
    got = float(losses.batch_hard_triplet_loss(labels, e, margin=0.3, squared=squared,
                                                soft=soft))
    np.testing.assert_allclose(got, ref_batch_hard(labels, e, 0.3, squared, soft), atol=1e-5)


@pytest.mark.parametrize("kind", ["cosine", "l2"])
def test_distillation_matches_reference(kind):
    rng = np.random.default_rng(5)
    s = rng.normal(size=(7, 16)).astype(np.float32)
    t = rng.normal(size=(7, 16)).astype(np.float32)
    got = float(losses.distillation_loss(s, t, kind=kind))
    np.testing.assert_allclose(got, ref_distillation(s, t, kind), rtol=1e-5, atol=1e-5)
    assert float(losses.distillation_loss(t, t, kind=kind)) == pytest.approx(0.0, abs=1e-6)


def test_distillation_with_classification_adds_cross_entropy():
    rng = np.random.default_rng(6)
    s, t = rng.normal(size=(2, 5, 8)).astype(np.float32)
    logits = rng.normal(size=(5, 4)).astype(np.float32)
    labels = np.array([0, 3, 1, 1, 2])
    ce = np.mean([np.log(np.exp(row).sum()) - row[y] for row, y in zip(logits, labels)])
    got = float(losses.distillation_with_classification(s, t, labels, logits, "l2", 0.5))
    np.testing.assert_allclose(got, ref_distillation(s, t, "l2") + 0.5 * ce, rtol=1e-5)


def test_multi_head_cross_entropy_sums_heads():
    rng = np.random.default_rng(8)
    logits = [rng.normal(size=(6, 5)).astype(np.float32) for _ in range(3)]
    labels = np.array([0, 1, 2, 3, 4, 0])
    ref = sum(np.mean([np.log(np.exp(r).sum()) - r[y] for r, y in zip(lg, labels)])
              for lg in logits)
    got = float(losses.multi_head_cross_entropy(labels, logits))
    np.testing.assert_allclose(got, ref, rtol=1e-5)


@pytest.mark.parametrize("name", ["semi_hard", "batch_hard", "batch_hard_soft", "cosine", "l2"])
def test_gradients_finite_with_duplicate_embeddings(name):
    # Rows 0 and 1 coincide: distance 0, where a naive sqrt has an infinite gradient.
    rng = np.random.default_rng(9)
    e = _unit(rng.normal(size=(8, 6))).astype(np.float32)
    e[1] = e[0]
    labels = np.array([0, 0, 1, 1, 2, 2, 3, 4])
    teacher = _unit(rng.normal(size=(8, 6))).astype(np.float32)
    teacher[0] = e[0]
    fns = {
        "semi_hard": lambda x: losses.semi_hard_triplet_loss(labels, x, margin=0.5),
        "batch_hard": lambda x: losses.batch_hard_triplet_loss(labels, x, margin=0.5),
        "batch_hard_soft": lambda x: losses.batch_hard_triplet_loss(labels, x, soft=True),
        "cosine": lambda x: losses.distillation_loss(x, teacher, "cosine"),
        "l2": lambda x: losses.distillation_loss(x, teacher, "l2"),
    }
    (grad,) = gradient(fns[name], e)
    assert grad.shape == e.shape
    assert np.all(np.isfinite(grad))
    assert np.any(grad != 0.0)


def test_keras_loss_wrappers_match_functions_and_round_trip():
    rng = np.random.default_rng(10)
    labels = LABEL_SETS["pk"]
    e = _unit(rng.normal(size=(len(labels), 8))).astype(np.float32)
    t = rng.normal(size=(len(labels), 8)).astype(np.float32)
    cases = [
        (losses.SemiHardTripletLoss(margin=0.3, squared=True), labels, e,
         ref_semi_hard(labels, e, 0.3, True)),
        (losses.BatchHardTripletLoss(margin=0.4, soft=False), labels, e,
         ref_batch_hard(labels, e, 0.4, False, False)),
        (losses.DistillationLoss(kind="cosine"), t, e, ref_distillation(e, t, "cosine")),
    ]
    for loss, y_true, y_pred, ref in cases:
        np.testing.assert_allclose(float(loss(y_true, y_pred)), ref, atol=1e-5)
        clone = type(loss).from_config(loss.get_config())
        assert clone.get_config() == loss.get_config()
        np.testing.assert_allclose(float(clone(y_true, y_pred)), ref, atol=1e-5)


def test_float16_embeddings_are_computed_in_float32():
    rng = np.random.default_rng(11)
    labels = LABEL_SETS["pk"]
    e = _unit(rng.normal(size=(len(labels), 8))).astype(np.float16)
    got = losses.semi_hard_triplet_loss(labels, e, margin=0.2)
    assert keras.backend.standardize_dtype(got.dtype) == "float32"
    ref = ref_semi_hard(labels, e.astype(np.float32), 0.2, False)
    np.testing.assert_allclose(float(got), ref, atol=1e-5)


def test_unknown_distillation_kind_is_rejected():
    with pytest.raises(ValueError, match="unknown distillation kind 'kl'"):
        losses.distillation_loss(np.zeros((2, 3)), np.zeros((2, 3)), kind="kl")
    with pytest.raises(ValueError, match="unknown distillation kind"):
        losses.DistillationLoss(kind="kl")
