"""Both pipeline backends: same pixels as an independent decode, skipping and counting."""

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from tfface.errors import DataError
from training.data.augment import AugmentConfig
from training.data.pipeline import FacePipeline


@pytest.fixture(scope="module")
def tf():
    """TensorFlow, or skip (the JAX GPU machine has none; the numpy path still runs)."""
    return pytest.importorskip("tensorflow")


def reference(path):
    """Independent decode: Pillow + the published formula (x - 127.5) / 128."""
    return (np.asarray(Image.open(path).convert("RGB"), np.float32) - 127.5) / 128.0


@pytest.fixture
def tree(tmp_path):
    rng = np.random.default_rng(0)
    for c in range(3):
        (tmp_path / f"id{c}").mkdir()
        for i in range(4):
            img = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
            fmt = "PNG" if i % 2 else "JPEG"
            Image.fromarray(img).save(tmp_path / f"id{c}" / f"{i}.{fmt.lower()}", format=fmt)
    return tmp_path


BROKEN = {"id0/0.jpeg", "id1/1.png", "id2/2.jpeg"}


def corrupt(tree):
    good = (tree / "id0" / "0.jpeg").read_bytes()
    (tree / "id0" / "0.jpeg").write_bytes(good[: len(good) // 3])   # truncated JPEG
    (tree / "id1" / "1.png").write_bytes(b"")                         # empty file
    (tree / "id2" / "2.jpeg").write_bytes(b"\xff\xd8\xff\xe0 garbage")  # corrupt header
    return len(BROKEN)


def collect(batches):
    return [tuple(np.asarray(t) for t in b) for b in batches]


def test_numpy_and_tf_identical_and_match_reference(tree, tf):
    pipe = FacePipeline(tree, batch_size=4, seed=7, workers=2)
    np_batches = collect(pipe.numpy_batches(epochs=2))
    tf_batches = collect(pipe.tf_dataset(epochs=2).as_numpy_iterator())
    assert len(np_batches) == len(tf_batches) == 6
    for (xn, yn), (xt, yt) in zip(np_batches, tf_batches):
        assert xn.dtype == np.float32 and xn.shape == (4, 112, 112, 3)
        np.testing.assert_array_equal(xn, xt)
        np.testing.assert_array_equal(yn, yt)
    x = np.concatenate([b[0] for b in np_batches[:3]])
    y = np.concatenate([b[1] for b in np_batches[:3]])
    paths = sorted(tree.glob("id*/*"))
    refs = {p: reference(p) for p in paths}
    for img, label in zip(x, y):  # every image of epoch 0 is one of the files, label right
        match = [p for p in paths if np.array_equal(refs[p], img)]
        assert len(match) == 1 and match[0].parent.name == f"id{label}"
    assert len({tuple(b[1]) for b in np_batches[:3]} | {tuple(b[1]) for b in np_batches[3:]}) > 1


def test_augmented_batches_identical_across_backends(tree, tf):
    pipe = FacePipeline(tree, batch_size=6, seed=1, augment=AugmentConfig(), workers=2)
    for (xn, yn), (xt, yt) in zip(collect(pipe.numpy_batches(epochs=1)),
                                  collect(pipe.tf_dataset(epochs=1).as_numpy_iterator())):
        np.testing.assert_array_equal(xn, xt)


@pytest.mark.parametrize("backend", ["numpy", "tf"])
def test_unreadable_skipped_and_counted(tree, backend, request):
    if backend == "tf":
        request.getfixturevalue("tf")
    bad = corrupt(tree)
    pipe = FacePipeline(tree, batch_size=12, shuffle=False, workers=2)
    it = (pipe.numpy_batches(epochs=2) if backend == "numpy"
          else pipe.tf_dataset(epochs=2).as_numpy_iterator())
    batches = collect(it)
    assert len(batches) == 2 and batches[0][0].shape == (12, 112, 112, 3)
    assert pipe.skipped.count == bad, backend  # counted once, not once per epoch
    x, y = batches[0]
    assert y.tolist() == [0] * 4 + [1] * 4 + [2] * 4  # refilled from the same identity
    for j, path in enumerate(sorted(tree.glob("id*/*"))):
        if f"{path.parent.name}/{path.name}" not in BROKEN:
            np.testing.assert_array_equal(x[j], reference(path))
    assert any("0.jpeg" in e for e in pipe.skipped.examples)


def test_resume_continues_the_same_sequence(tree):
    pipe = FacePipeline(tree, batch_size=4, seed=3, augment=AugmentConfig(), workers=1)
    full = collect(pipe.numpy_batches(epochs=3))
    resumed = collect(pipe.numpy_batches(epochs=2, start_epoch=1, start_batch=2))
    assert len(resumed) == len(full) - 5
    for a, b in zip(full[5:], resumed):
        np.testing.assert_array_equal(a[0], b[0])


def test_size_policy(tmp_path):
    (tmp_path / "a").mkdir()
    rng = np.random.default_rng(5)
    big = rng.integers(0, 256, (150, 150, 3), dtype=np.uint8)
    Image.fromarray(big).save(tmp_path / "a" / "big.png")
    pipe = FacePipeline(tmp_path, batch_size=1, shuffle=False, workers=1)
    (x, _), = collect(pipe.numpy_batches(epochs=1))
    expected = cv2.resize(big, (112, 112), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(x[0], (expected.astype(np.float32) - 127.5) / 128)
    Image.fromarray(big[:, :120]).save(tmp_path / "a" / "raw.png")
    with pytest.raises(DataError, match="tfface-align"):
        FacePipeline(tmp_path, batch_size=1)


def test_targets_follow_flips(tree):
    n = 12
    emb = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    pipe = FacePipeline(tree, batch_size=n, shuffle=False, workers=1, seed=4,
                        augment=AugmentConfig(flip=True, crop_min_scale=1.0, brightness=0,
                                              contrast=0, saturation=0),
                        targets=(emb, -emb))
    (x, y, t), = collect(pipe.numpy_batches(epochs=1))
    flipped = 0
    for j, path in enumerate(sorted(tree.glob("id*/*"))):
        ref = reference(path)
        if np.array_equal(x[j], ref[:, ::-1]):
            np.testing.assert_array_equal(t[j], -emb[j])
            flipped += 1
        else:
            np.testing.assert_array_equal(x[j], ref)
            np.testing.assert_array_equal(t[j], emb[j])
    assert 0 < flipped < n


def test_bad_arguments(tree):
    with pytest.raises(DataError, match="fewer than one batch"):
        FacePipeline(tree, batch_size=100)
    with pytest.raises(DataError, match="do not match"):
        FacePipeline(tree, batch_size=2, targets=(np.zeros((3, 2)), np.zeros((3, 2))))
