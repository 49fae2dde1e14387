"""Verification metrics against brute-force numpy loops, scikit-learn and known theory."""

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve
from sklearn.model_selection import KFold

from eval import metrics
from tfface.errors import DataError


def synthetic_scores(n_ids=60, per_id=6, dim=32, noise=0.8, seed=0, n_pairs=1000):
    """Cosine scores of pairs of synthetic embeddings: identity centre + Gaussian noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_ids, dim))
    ids = np.repeat(np.arange(n_ids), per_id)
    emb = centres[ids] + noise * rng.normal(size=(ids.size, dim))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    same = np.arange(n_pairs) % 2 == 0
    a = np.empty(n_pairs, int)
    b = np.empty(n_pairs, int)
    for k in range(n_pairs):
        i = rng.integers(n_ids)
        if same[k]:
            a[k], b[k] = i * per_id + rng.choice(per_id, 2, replace=False)
        else:
            j = (i + 1 + rng.integers(n_ids - 1)) % n_ids
            a[k], b[k] = i * per_id + rng.integers(per_id), j * per_id + rng.integers(per_id)
    return np.sum(emb[a] * emb[b], axis=1), same


def brute_best_threshold(s, y):
    """First threshold of max accuracy among midpoints of sorted distinct scores (loop)."""
    u = sorted(set(s.tolist()))
    cands = [u[0] - 1.0] + [(u[i] + u[i + 1]) / 2 for i in range(len(u) - 1)] + [u[-1] + 1.0]
    best_t, best_acc = None, -1.0
    for t in cands:
        acc = np.count_nonzero((s >= t) == y) / len(s)
        if acc > best_acc:
            best_t, best_acc = t, acc
    return best_t, best_acc


def brute_kfold(s, y, fold_of):
    accs, thrs = [], []
    for k in np.unique(fold_of):
        test = fold_of == k
        t, _ = brute_best_threshold(s[~test], y[~test])
        thrs.append(t)
        accs.append(np.mean((s[test] >= t) == y[test]))
    return np.array(accs), np.array(thrs)


@pytest.mark.parametrize("n", [600, 1003, 6000])
def test_make_folds_matches_sklearn_kfold(n):
    folds = metrics.make_folds(n, 10)
    for k, (_, test) in enumerate(KFold(n_splits=10, shuffle=False).split(np.arange(n))):
        np.testing.assert_array_equal(np.nonzero(folds == k)[0], test)


@pytest.mark.parametrize("noise", [0.6, 1.0, 1.6])
def test_ten_fold_accuracy_matches_brute_force(noise):
    s, y = synthetic_scores(noise=noise, n_pairs=600, seed=int(noise * 10))
    m = metrics.verification_metrics(s, y, n_folds=10)
    kfold = np.empty(s.size, int)
    for k, (_, test) in enumerate(KFold(n_splits=10).split(s)):
        kfold[test] = k
    accs, thrs = brute_kfold(s, y, kfold)
    np.testing.assert_allclose(m["fold_accuracy"], accs)
    np.testing.assert_allclose(m["fold_threshold"], thrs)
    assert m["accuracy_mean"] == pytest.approx(accs.mean())
    assert m["accuracy_std"] == pytest.approx(accs.std())
    t, acc = brute_best_threshold(s, y)
    assert m["best_threshold"] == pytest.approx(t)
    assert m["best_accuracy"] == pytest.approx(acc)


def test_given_folds_are_used():
    s, y = synthetic_scores(noise=1.2, n_pairs=400, seed=3)
    folds = np.random.default_rng(0).permutation(np.repeat(np.arange(4), 100))
    m = metrics.verification_metrics(s, y, folds=folds)
    accs, thrs = brute_kfold(s, y, folds)
    assert m["n_folds"] == 4
    np.testing.assert_allclose(m["fold_accuracy"], accs)
    np.testing.assert_allclose(m["fold_threshold"], thrs)


def test_roc_auc_eer_tar_against_sklearn():
    s, y = synthetic_scores(noise=1.3, n_pairs=2000, seed=5)
    fpr, tpr, thr = metrics.roc_curve(s, y)
    sk_fpr, sk_tpr, sk_thr = sk_roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    np.testing.assert_allclose(thr[1:], sk_thr[1:])
    m = metrics.verification_metrics(s, y)
    assert m["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    # EER lies between the two ROC points where FNR - FPR changes sign.
    fnr = 1 - sk_tpr
    i = int(np.argmax(fnr - sk_fpr <= 0))
    lo, hi = sorted([sk_fpr[i - 1], sk_fpr[i]])
    assert lo - 1e-12 <= m["eer"] <= hi + 1e-12
    assert abs(fnr[i] - sk_fpr[i]) < 0.01
    for far in (1e-3, 1e-2):
        ok = sk_fpr <= far
        assert m["tar_at_far"][f"{far:g}"]["tar"] == pytest.approx(sk_tpr[ok].max())
        assert m["tar_at_far"][f"{far:g}"]["far"] <= far
        # The 10-fold TAR uses thresholds set on the other folds.
        assert 0.0 <= m["tar_at_far"][f"{far:g}"]["tar_folds_mean"] <= 1.0


def test_known_separability_gaussian_theory():
    """Genuine ~ N(d, 1), impostor ~ N(0, 1): AUC = Phi(d / sqrt 2), best accuracy and EER
    follow from the threshold d / 2 (Phi(d / 2) and 1 - Phi(d / 2))."""
    rng = np.random.default_rng(7)
    d, n = 2.0, 20000
    y = np.arange(2 * n) % 2 == 0
    s = rng.normal(size=2 * n) + d * y
    phi = lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2)))
    m = metrics.verification_metrics(s, y)
    assert m["auc"] == pytest.approx(phi(d / math.sqrt(2)), abs=0.005)
    assert m["accuracy_mean"] == pytest.approx(phi(d / 2), abs=0.01)
    assert m["eer"] == pytest.approx(1 - phi(d / 2), abs=0.01)
    assert m["best_threshold"] == pytest.approx(d / 2, abs=0.1)


def test_perfect_and_chance():
    y = np.arange(200) % 2 == 0
    m = metrics.verification_metrics(np.where(y, 0.9, 0.1), y)
    assert m["accuracy_mean"] == 1.0 and m["auc"] == 1.0 and m["eer"] == 0.0
    assert m["tar_at_far"]["0.001"]["tar"] == 1.0
    assert 0.1 < m["best_threshold"] <= 0.9
    rng = np.random.default_rng(1)
    y = rng.random(6000) < 0.5
    m = metrics.verification_metrics(rng.random(6000), y)
    assert m["auc"] == pytest.approx(0.5, abs=0.03)
    assert m["accuracy_mean"] == pytest.approx(0.5, abs=0.03)
    assert m["eer"] == pytest.approx(0.5, abs=0.03)


def test_bad_inputs():
    with pytest.raises(DataError, match="differ in length"):
        metrics.verification_metrics([0.1, 0.2], [True])
    with pytest.raises(DataError, match="NaN"):
        metrics.verification_metrics([0.1, np.nan] * 10, [True, False] * 10)
    with pytest.raises(DataError, match="genuine and impostor"):
        metrics.verification_metrics(np.arange(20.0), np.ones(20, bool))
    with pytest.raises(DataError, match="cannot be split"):
        metrics.make_folds(5, 10)
