"""Plots are written as valid, non-empty PNGs; the identity similarity matrix against a loop."""

import numpy as np
import pytest

from eval import metrics, plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run():
    rng = np.random.default_rng(0)
    labels = np.repeat([f"id{i}" for i in range(5)], 4)
    centres = rng.normal(size=(5, 16))
    emb = centres[np.repeat(np.arange(5), 4)] + 0.5 * rng.normal(size=(20, 16))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    y = np.arange(200) % 2 == 0
    s = np.clip(rng.normal(0.2, 0.2, 200) + 0.4 * y, -1, 1)
    return emb, labels, s, y


def _is_png(path, min_bytes=1000):
    with open(path, "rb") as f:
        data = f.read()
    return data[:8] == PNG_MAGIC and len(data) > min_bytes


def test_curve_and_histogram_plots(run, tmp_path):
    _, _, s, y = run
    fpr, tpr, _ = metrics.roc_curve(s, y)
    assert _is_png(plots.plot_roc(fpr, tpr, 0.9, tmp_path / "roc.png", far_points={1e-2: 0.3}))
    assert _is_png(plots.plot_similarity_histogram(s, y, tmp_path / "s.png", threshold=0.4))
    assert _is_png(plots.plot_angle_histogram(s, y, tmp_path / "a.png", threshold=0.4))


def test_pair_grid(tmp_path):
    faces = np.random.default_rng(1).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    path = plots.plot_pair_grid(faces, faces[::-1], np.linspace(0, 1, 5), tmp_path / "g.png",
                                "worst", captions=list("abcde"))
    assert _is_png(path)
    assert _is_png(plots.plot_pair_grid(faces[:0], faces[:0], np.zeros(0), tmp_path / "e.png",
                                        "none"), min_bytes=100)


def test_identity_similarity_matches_loop(run):
    emb, labels, _, _ = run
    names = ["id0", "id3", "id1"]
    got = plots.identity_similarity(emb, labels, names)
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            vals = [float(emb[p] @ emb[q]) for p in range(20) for q in range(20)
                    if labels[p] == a and labels[q] == b and p != q]
            assert got[i, j] == pytest.approx(np.mean(vals))


def test_select_identities():
    ids = ["b"] * 3 + ["a"] * 3 + ["c"] * 5 + ["d"] * 2
    assert plots.select_identities(ids, 3, 10) == ["c", "a", "b"]
    assert plots.select_identities(ids, 2, 2) == ["c", "a"]


def test_tsne_and_heatmap(run, tmp_path):
    emb, labels, _, _ = run
    assert _is_png(plots.plot_tsne(emb, labels, tmp_path / "t.png"))
    assert _is_png(plots.plot_identity_heatmap(emb, labels, ["id0", "id1", "id2"],
                                               tmp_path / "h.png"))
