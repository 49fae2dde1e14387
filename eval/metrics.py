"""Verification metrics: the 10-fold protocol of LFW (facenet/insightface ``calculate_roc``),
ROC AUC, EER and TAR at fixed FAR, from similarity scores of face pairs.

Scores are similarities (higher = more alike, e.g. cosine of L2-normalised embeddings); a pair
is predicted "same" when ``score >= threshold``. Thresholds are searched exactly: every
midpoint between consecutive distinct scores (plus one below and one above all scores) is a
candidate, instead of the seeds' fixed grid (``np.arange(0, 4, 0.01)`` on distances), so the
result does not depend on a grid step. Among thresholds with equal accuracy the smallest wins.

Numpy only.
"""

import numpy as np

from tfface.errors import DataError

FAR_TARGETS = (1e-3, 1e-2)


def _check(scores, issame):
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    issame = np.asarray(issame).reshape(-1)
    if scores.shape != issame.shape:
        raise DataError(f"scores and labels differ in length: {scores.size} vs {issame.size}")
    if scores.size == 0:
        raise DataError("no pairs to evaluate")
    if not np.isfinite(scores).all():
        raise DataError(f"{int((~np.isfinite(scores)).sum())} scores are NaN or infinite")
    return scores, issame.astype(bool)


def candidate_thresholds(scores):
    """Thresholds that realise every distinct decision on ``scores``.

    Returns:
        float64 (K,) ascending: one below the minimum, the midpoints between consecutive
        distinct scores, one above the maximum.
    """
    u = np.unique(np.asarray(scores, dtype=np.float64))
    mids = (u[:-1] + u[1:]) / 2.0
    return np.concatenate([[u[0] - 1.0], mids, [u[-1] + 1.0]])


def _counts_at(thresholds, scores, issame):
    """True/false accepts at each threshold (``score >= t``): (tp, fp) int arrays (K,)."""
    pos = np.sort(scores[issame])
    neg = np.sort(scores[~issame])
    tp = pos.size - np.searchsorted(pos, thresholds, side="left")
    fp = neg.size - np.searchsorted(neg, thresholds, side="left")
    return tp, fp


def accuracy_at(scores, issame, threshold):
    """Fraction of pairs decided correctly with ``score >= threshold`` meaning same."""
    scores, issame = _check(scores, issame)
    return float(np.mean((scores >= threshold) == issame))


def best_threshold(scores, issame):
    """The threshold of highest accuracy on these pairs (smallest on ties).

    Returns:
        (threshold, accuracy) floats.
    """
    scores, issame = _check(scores, issame)
    ts = candidate_thresholds(scores)
    tp, fp = _counts_at(ts, scores, issame)
    tn = (~issame).sum() - fp
    acc = (tp + tn) / scores.size
    i = int(np.argmax(acc))
    return float(ts[i]), float(acc[i])


def make_folds(n_pairs, n_folds=10):
    """Fold index of each pair: consecutive blocks, as sklearn ``KFold(shuffle=False)`` (the
    seeds' split); the first ``n_pairs % n_folds`` folds get one extra pair.

    Returns:
        int64 (n_pairs,) values in 0..n_folds-1.
    """
    if n_folds < 2:
        raise DataError(f"need at least 2 folds; received n_folds={n_folds}")
    if n_pairs < n_folds:
        raise DataError(f"{n_pairs} pairs cannot be split into {n_folds} folds")
    sizes = np.full(n_folds, n_pairs // n_folds, dtype=np.int64)
    sizes[: n_pairs % n_folds] += 1
    return np.repeat(np.arange(n_folds, dtype=np.int64), sizes)


def roc_curve(scores, issame):
    """ROC over all distinct thresholds.

    Returns:
        fpr, tpr, thresholds: float64 (K,), thresholds descending (first one accepts nothing),
        as ``sklearn.metrics.roc_curve(..., drop_intermediate=False)``.
    """
    scores, issame = _check(scores, issame)
    n_pos, n_neg = int(issame.sum()), int((~issame).sum())
    if n_pos == 0 or n_neg == 0:
        raise DataError(f"ROC needs both genuine and impostor pairs; got {n_pos} and {n_neg}")
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], issame[order]
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]  # last index of each distinct score
    tp = np.cumsum(y)[last]
    fp = np.cumsum(~y)[last]
    tpr = np.r_[0.0, tp / n_pos]
    fpr = np.r_[0.0, fp / n_neg]
    thresholds = np.r_[np.inf, s[last]]
    return fpr, tpr, thresholds


def roc_auc(fpr, tpr):
    """Area under the ROC curve (trapezoid rule)."""
    return float(np.trapezoid(tpr, fpr))


def equal_error_rate(fpr, tpr, thresholds):
    """EER: where the false-accept rate equals the false-reject rate, linearly interpolated
    between the two ROC points that straddle it.

    Returns:
        (eer, threshold) floats.
    """
    fnr = 1.0 - tpr
    diff = fnr - fpr  # decreasing from 1 to -1 along the curve
    i = int(np.nonzero(diff <= 0)[0][0])
    if i == 0 or diff[i] == 0:
        t = thresholds[i] if np.isfinite(thresholds[i]) else thresholds[min(i + 1, len(fpr) - 1)]
        return float(fpr[i]), float(t)
    w = diff[i - 1] / (diff[i - 1] - diff[i])
    eer = fpr[i - 1] + w * (fpr[i] - fpr[i - 1])
    t0 = thresholds[i - 1] if np.isfinite(thresholds[i - 1]) else thresholds[i]
    return float(eer), float(t0 + w * (thresholds[i] - t0))


def tar_at_far(fpr, tpr, thresholds, far):
    """Best true-accept rate whose false-accept rate is at most ``far``.

    Returns:
        dict with tar, far (achieved), threshold.
    """
    ok = np.nonzero(fpr <= far)[0]
    i = int(ok[np.argmax(tpr[ok])])
    t = thresholds[i] if np.isfinite(thresholds[i]) else None
    return {"tar": float(tpr[i]), "far": float(fpr[i]), "threshold": t}


def _threshold_for_far(scores, issame, far):
    """Smallest candidate threshold whose false-accept rate on these pairs is <= far."""
    ts = candidate_thresholds(scores)
    _, fp = _counts_at(ts, scores, issame)
    n_neg = max(int((~issame).sum()), 1)
    ok = np.nonzero(fp / n_neg <= far)[0]
    return float(ts[ok[0]])


def verification_metrics(scores, issame, n_folds=10, folds=None, far_targets=FAR_TARGETS):
    """Every verification number of the standard protocol.

    For each fold the threshold of best accuracy on the other folds is applied to the held-out
    fold (facenet/insightface ``calculate_roc``); accuracy is reported as mean and (population)
    standard deviation over folds. TAR@FAR is given on all pairs (from the ROC) and, like
    facenet's ``calculate_val``, per fold with the threshold set on the other folds.

    Args:
        scores: float (N,) similarities, higher = more alike.
        issame: bool (N,) True for genuine pairs.
        n_folds: number of folds when ``folds`` is None.
        folds: optional int (N,) fold index of each pair (e.g. LFW's pairs.txt blocks);
            default: consecutive blocks (:func:`make_folds`).
        far_targets: FARs for the TAR@FAR numbers.
    Returns:
        dict of plain Python numbers and lists (JSON-ready).
    """
    scores, issame = _check(scores, issame)
    if folds is None:
        folds = make_folds(scores.size, n_folds)
    folds = np.asarray(folds).reshape(-1)
    if folds.shape != scores.shape:
        raise DataError(f"folds has {folds.size} entries for {scores.size} pairs")
    fold_ids = np.unique(folds)
    if fold_ids.size < 2:
        raise DataError("need at least 2 folds")

    fold_acc, fold_thr, fold_train_acc = [], [], []
    fold_val = {far: [] for far in far_targets}
    for k in fold_ids:
        test = folds == k
        train = ~test
        t, train_acc = best_threshold(scores[train], issame[train])
        fold_thr.append(t)
        fold_train_acc.append(train_acc)
        fold_acc.append(float(np.mean((scores[test] >= t) == issame[test])))
        for far in far_targets:
            tv = _threshold_for_far(scores[train], issame[train], far)
            acc_t = scores[test] >= tv
            pos, neg = issame[test], ~issame[test]
            tar = float(acc_t[pos].mean()) if pos.any() else float("nan")
            far_got = float(acc_t[neg].mean()) if neg.any() else float("nan")
            fold_val[far].append((tar, far_got, tv))

    fpr, tpr, thr = roc_curve(scores, issame)
    t_all, acc_all = best_threshold(scores, issame)
    eer, eer_t = equal_error_rate(fpr, tpr, thr)
    acc = np.asarray(fold_acc)
    out = {
        "n_pairs": int(scores.size),
        "n_genuine": int(issame.sum()),
        "n_impostor": int((~issame).sum()),
        "n_folds": int(fold_ids.size),
        "accuracy_mean": float(acc.mean()),
        "accuracy_std": float(acc.std()),
        "fold_accuracy": [float(a) for a in acc],
        "fold_threshold": fold_thr,
        "fold_train_accuracy": fold_train_acc,
        "threshold_mean": float(np.mean(fold_thr)),
        "best_threshold": t_all,
        "best_accuracy": acc_all,
        "auc": roc_auc(fpr, tpr),
        "eer": eer,
        "eer_threshold": eer_t,
        "tar_at_far": {},
    }
    for far in far_targets:
        v = np.asarray([x[:2] for x in fold_val[far]], dtype=np.float64)
        out["tar_at_far"][f"{far:g}"] = {
            **tar_at_far(fpr, tpr, thr, far),
            "tar_folds_mean": float(np.nanmean(v[:, 0])),
            "tar_folds_std": float(np.nanstd(v[:, 0])),
            "far_folds_mean": float(np.nanmean(v[:, 1])),
        }
    return out
