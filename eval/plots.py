"""Plots of a verification run, written as PNG files.

Uses matplotlib's object API with the Agg canvas (no pyplot, no display, no global state).
t-SNE needs scikit-learn (the ``viz`` extra).
"""

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 110


def _save(fig, path):
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return str(path)


def plot_roc(fpr, tpr, auc, path, title="ROC", far_points=None):
    """ROC with a log FAR axis.

    Args:
        fpr, tpr: float (K,) from :func:`eval.metrics.roc_curve`.
        far_points: optional {far: tar} marked on the curve.
    """
    fig = Figure(figsize=(5.5, 4.5))
    ax = fig.add_subplot()
    floor = 1.0 / max(10 * len(fpr), 1000)
    ax.plot(np.maximum(fpr, floor), tpr, lw=1.5, label=f"AUC = {auc:.4f}")
    for far, tar in (far_points or {}).items():
        ax.plot([far], [tar], "o", label=f"TAR@FAR={far:g}: {tar:.4f}")
    ax.set_xscale("log")
    ax.set_xlim(floor, 1.0)
    ax.set_ylim(0.0, 1.01)
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("true accept rate")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def _two_hists(ax, values, issame, bins, threshold=None, label_t="threshold"):
    ax.hist(values[issame], bins=bins, alpha=0.6, density=True,
            label=f"genuine ({int(issame.sum())})", color="tab:green")
    ax.hist(values[~issame], bins=bins, alpha=0.6, density=True,
            label=f"impostor ({int((~issame).sum())})", color="tab:red")
    if threshold is not None:
        ax.axvline(threshold, color="k", ls="--", lw=1, label=f"{label_t} {threshold:.3f}")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)


def plot_similarity_histogram(scores, issame, path, threshold=None, title="Cosine similarity"):
    """Genuine vs impostor distributions of cosine similarity."""
    scores, issame = np.asarray(scores, float), np.asarray(issame, bool)
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    _two_hists(ax, scores, issame, np.linspace(-1, 1, 81), threshold)
    ax.set_xlabel("cosine similarity")
    ax.set_title(title)
    return _save(fig, path)


def plot_angle_histogram(scores, issame, path, threshold=None, title="Angle between embeddings"):
    """Genuine vs impostor distributions of the angle theta = arccos(cosine), in degrees (the
    theta plot of foamliu's InsightFace)."""
    scores, issame = np.asarray(scores, float), np.asarray(issame, bool)
    theta = np.degrees(np.arccos(np.clip(scores, -1.0, 1.0)))
    t = None if threshold is None else float(np.degrees(np.arccos(np.clip(threshold, -1, 1))))
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    _two_hists(ax, theta, issame, np.linspace(0, 180, 91), t, "threshold (deg)")
    ax.set_xlabel("theta (degrees)")
    ax.set_title(title)
    return _save(fig, path)


def plot_pair_grid(left, right, scores, path, title, captions=None, cols=4):
    """Pairs of aligned faces side by side with their similarity.

    Args:
        left, right: uint8 RGB (P, h, w, 3) the two faces of each pair.
        scores: float (P,).
        captions: optional list of P short strings under each pair.
    """
    n = len(scores)
    if n == 0:
        fig = Figure(figsize=(4, 1.5))
        fig.text(0.5, 0.5, f"{title}: none", ha="center", va="center")
        return _save(fig, path)
    cols = min(cols, n)
    rows = int(np.ceil(n / cols))
    fig = Figure(figsize=(2.6 * cols, 1.6 * rows + 0.5))
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(np.concatenate([left[i], right[i]], axis=1))
        text = f"{scores[i]:.3f}"
        if captions is not None:
            text = f"{text}\n{captions[i]}"
        ax.set_title(text, fontsize=7)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def select_identities(identities, min_images=3, max_identities=20):
    """Identities with at least ``min_images`` images, the most populous first.

    Returns:
        list of identity names (at most ``max_identities``).
    """
    names, counts = np.unique(np.asarray(identities), return_counts=True)
    order = np.lexsort((names, -counts))
    return [str(names[i]) for i in order if counts[i] >= min_images][:max_identities]


def plot_tsne(emb, labels, path, title="t-SNE of embeddings", seed=0):
    """2-D t-SNE of embeddings coloured by identity (MobileFace / MobileID style).

    Args:
        emb: float (N, D) L2-normalised embeddings.
        labels: str (N,) identity of each row.
    """
    from sklearn.manifold import TSNE

    emb = np.asarray(emb, np.float32)
    labels = np.asarray(labels)
    perplexity = float(max(2.0, min(30.0, (len(emb) - 1) / 3.0)))
    # Exact t-SNE for the few hundred points plotted: faster here than Barnes-Hut's setup.
    method = "exact" if len(emb) <= 1000 else "barnes_hut"
    xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
              metric="cosine", method=method).fit_transform(emb)
    fig = Figure(figsize=(7, 6))
    ax = fig.add_subplot()
    uniq = list(dict.fromkeys(labels.tolist()))
    colors = _palette(len(uniq))
    for c, name in zip(colors, uniq):
        m = labels == name
        ax.scatter(xy[m, 0], xy[m, 1], s=18, color=c, label=name)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    if len(uniq) <= 25:
        ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _save(fig, path)


def _palette(n):
    from matplotlib import colormaps

    if n <= 20:
        return [colormaps["tab20"](i) for i in range(n)]
    return [colormaps["hsv"](i / n) for i in range(n)]


def identity_similarity(emb, labels, names):
    """Mean cosine similarity between the images of each pair of identities.

    The diagonal averages distinct images of the same identity (self-pairs excluded).

    Returns:
        float64 (K, K) for the K ``names``.
    """
    emb = np.asarray(emb, np.float64)
    labels = np.asarray(labels)
    groups = [emb[labels == n] for n in names]
    k = len(names)
    mat = np.zeros((k, k))
    for i in range(k):
        for j in range(i, k):
            s = groups[i] @ groups[j].T
            if i == j:
                m = len(groups[i])
                v = (s.sum() - np.trace(s)) / (m * (m - 1)) if m > 1 else np.nan
            else:
                v = s.mean()
            mat[i, j] = mat[j, i] = v
    return mat


def plot_identity_heatmap(emb, labels, names, path, title="Mean similarity between identities"):
    """Heatmap of :func:`identity_similarity` (MobileFace's confusion-matrix view)."""
    mat = identity_similarity(emb, labels, names)
    k = len(names)
    fig = Figure(figsize=(1.0 + 0.35 * k, 0.6 + 0.35 * k))
    ax = fig.add_subplot()
    # Scale to the data: untrained and trained models occupy very different ranges.
    im = ax.imshow(mat, vmin=np.nanmin(mat), vmax=np.nanmax(mat), cmap="viridis")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xticklabels(names, rotation=90, fontsize=6)
    ax.set_yticklabels(names, fontsize=6)
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if np.isfinite(mat[i, j]):
                    ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", fontsize=5,
                            color="w" if mat[i, j] < np.nanmean(mat) else "k")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="mean cosine similarity")
    ax.set_title(title, fontsize=9)
    return _save(fig, path)
