"""Listing identity folders: filters, skipped non-images, stable labels, identity split."""

import numpy as np
import pytest

from tfface.errors import DataError
from training.data.folders import list_flat_folder, list_image_folder, split_by_identity


@pytest.fixture
def tree(tmp_path):
    counts = {"bob": 3, "alice": 2, "carol": 1, "dave": 4}
    for name, n in counts.items():
        (tmp_path / name).mkdir()
        for i in range(n):
            (tmp_path / name / f"{i}.jpg").write_bytes(b"x")
    (tmp_path / "bob" / "notes.txt").write_text("not an image")
    (tmp_path / "bob" / ".hidden.jpg").write_bytes(b"x")
    (tmp_path / "dave" / "more").mkdir()
    (tmp_path / "dave" / "more" / "x.PNG").write_bytes(b"x")
    (tmp_path / "stray.jpg").write_bytes(b"x")
    (tmp_path / ".cache").mkdir()
    return tmp_path


def test_labels_sorted_and_non_images_skipped(tree):
    ds = list_image_folder(tree)
    assert ds.class_names == ["alice", "bob", "carol", "dave"]
    assert ds.class_counts().tolist() == [2, 3, 1, 5]
    assert ds.labels.tolist() == [0] * 2 + [1] * 3 + [2] + [3] * 5
    assert all(p.lower().endswith((".jpg", ".png")) and "/." not in p for p in ds.paths)
    assert str(tree / "dave" / "more" / "x.PNG") in ds.paths


def test_identity_filters(tree):
    ds = list_image_folder(tree, min_images=3)
    assert ds.class_names == ["bob", "dave"] and ds.labels.tolist() == [0] * 3 + [1] * 5
    assert list_image_folder(tree, max_identities=2).class_names == ["alice", "bob"]
    assert list_image_folder(tree, max_per_identity=2).class_counts().tolist() == [2, 2, 1, 2]
    with pytest.raises(DataError, match="at least 9"):
        list_image_folder(tree, min_images=9)


def test_errors_and_flat(tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        list_image_folder(tmp_path / "missing")
    (tmp_path / "a.jpg").write_bytes(b"x")
    with pytest.raises(DataError, match="list_flat_folder"):
        list_image_folder(tmp_path)
    flat = list_flat_folder(tmp_path)
    assert flat.paths == [str(tmp_path / "a.jpg")] and flat.labels.tolist() == [-1]


def test_split_by_identity_is_disjoint(tree):
    ds = list_image_folder(tree)
    train, val = split_by_identity(ds, val_fraction=0.5, seed=1)
    assert len(train.class_names) == 2 and len(val.class_names) == 2
    assert not set(train.class_names) & set(val.class_names)
    assert len(train) + len(val) == len(ds)
    for part in (train, val):
        for path, label in zip(part.paths, part.labels):
            assert f"/{part.class_names[label]}/" in path
        assert np.array_equal(np.unique(part.labels), np.arange(len(part.class_names)))
