"""Teacher .npz reading, centring, and target choice for mirrored images."""

import numpy as np
import pytest

from tfface.errors import DataError
from training.data.teacher import (
    load_teacher,
    load_teacher_mean,
    save_teacher_mean,
    select_targets,
)


@pytest.fixture
def npz(tmp_path):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(5, 4)).astype(np.float32) + 3.0
    flip = rng.normal(size=(5, 4)).astype(np.float32) + 3.0
    paths = np.array([f"celeba/{i}/00{i}.jpg" for i in range(5)])
    path = tmp_path / "t.npz"
    np.savez(path, path=paths, emb=emb, emb_flip=flip,
             detected=np.array([1, 0, 1, 1, 0], np.uint8))
    return path, emb, flip


def make_images(root, ext="jpg", skip=()):
    for i in range(5):
        if i not in skip:
            (root / "celeba" / str(i)).mkdir(parents=True, exist_ok=True)
            (root / "celeba" / str(i) / f"00{i}.{ext}").write_bytes(b"x")


def test_load_map_and_center(npz, tmp_path):
    path, emb, flip = npz
    make_images(tmp_path / "root")
    t = load_teacher(path, tmp_path / "root")
    assert t.paths[2] == str(tmp_path / "root" / "celeba" / "2" / "002.jpg")
    np.testing.assert_array_equal(t.emb, emb)
    assert t.mean is None and t.dim == 4
    train = t.subset([0, 1, 2]).centered()
    mean = (emb[:3].sum(0) + flip[:3].sum(0)) / 6.0  # both orientations of training rows
    np.testing.assert_allclose(train.mean, mean, rtol=1e-6)
    np.testing.assert_allclose(train.emb, emb[:3] - mean, rtol=1e-5, atol=1e-6)
    val = t.subset([3, 4]).centered(train.mean)
    np.testing.assert_allclose(val.emb_flip, flip[3:] - mean, rtol=1e-5, atol=1e-6)
    with pytest.raises(DataError):
        train.centered()
    assert load_teacher(path, tmp_path / "root", only_detected=True).detected.tolist() == [1, 1, 1]
    rows = t.rows_for([tmp_path / "root" / "celeba" / "4" / "004.jpg"])
    assert rows.tolist() == [4]
    with pytest.raises(DataError, match="no teacher embedding"):
        t.rows_for([tmp_path / "other.jpg"])
    out = tmp_path / "teacher_mean.json"
    save_teacher_mean(out, train.mean, teacher="test")
    np.testing.assert_array_equal(load_teacher_mean(out), train.mean)


def test_aligned_copies_and_missing_files(npz, tmp_path):
    path, emb, _ = npz
    make_images(tmp_path / "aligned", ext="png", skip=(1,))  # no face found in image 1
    with pytest.raises(DataError, match="not found"):
        load_teacher(path, tmp_path / "aligned", image_ext="png")
    t = load_teacher(path, tmp_path / "aligned", image_ext=".png", drop_missing=True)
    assert t.dropped == 1 and len(t) == 4
    assert t.paths[1] == str(tmp_path / "aligned" / "celeba" / "2" / "002.png")
    np.testing.assert_array_equal(t.emb, emb[[0, 2, 3, 4]])


def test_select_targets(npz):
    _, emb, flip = npz
    chosen = select_targets(emb, flip, np.array([True, False, True, False, False]))
    np.testing.assert_array_equal(chosen[[0, 2]], flip[[0, 2]])
    np.testing.assert_array_equal(chosen[[1, 3, 4]], emb[[1, 3, 4]])


def test_missing_keys(tmp_path):
    np.savez(tmp_path / "bad.npz", path=np.array(["a.jpg"]), emb=np.zeros((1, 2)))
    (tmp_path / "a.jpg").write_bytes(b"x")
    with pytest.raises(DataError, match="emb_flip"):
        load_teacher(tmp_path / "bad.npz", tmp_path)


def test_shared_celeba_centering(shared_data):
    """The data README: centred, random pairs of different people have cosine about 0."""
    t = load_teacher(shared_data / "teacher" / "celeba.npz", shared_data)
    assert len(t) == 4895 and all(p.startswith(str(shared_data)) for p in t.paths[:3])
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, len(t), (2, 2000))
    ids = np.array([p.split("/")[-2] for p in t.paths])
    keep = ids[a] != ids[b]

    def mean_cos(e):
        u = e / np.linalg.norm(e, axis=1, keepdims=True)
        return float(np.mean(np.sum(u[a[keep]] * u[b[keep]], axis=1)))

    assert mean_cos(t.emb) > 0.75
    assert abs(mean_cos(t.centered().emb)) < 0.1
