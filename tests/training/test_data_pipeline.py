"""Both pipeline backends: same pixels as an independent decode, skipping and counting."""

import os
import subprocess
import sys

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


def test_worker_processes_match_threads(tree, tf):
    bad = corrupt(tree)
    kwargs = {"batch_size": 4, "seed": 2, "augment": AugmentConfig(), "workers": 2}
    threads = FacePipeline(tree, **kwargs)
    procs = FacePipeline(tree, **kwargs)
    expected = collect(threads.numpy_batches(epochs=1))
    got = collect(procs.numpy_batches(epochs=1, processes=2))
    assert len(got) == len(expected) == 3
    for a, b in zip(expected, got):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    assert procs.skipped.count == threads.skipped.count == bad
    via_tf = collect(procs.tf_dataset(epochs=1, processes=2).as_numpy_iterator())
    for a, b in zip(expected, via_tf):
        np.testing.assert_array_equal(a[0], b[0])
    with pytest.raises(DataError, match="cache file path|cache=<file path>"):
        next(FacePipeline(tree, cache=True, **kwargs).numpy_batches(processes=2))


@pytest.mark.parametrize("where", ["memory", "file"])
def test_cache_serves_later_epochs(tree, where):
    cache = True if where == "memory" else tree.parent / f"{tree.name}.cache"
    pipe = FacePipeline(tree, batch_size=12, shuffle=False, cache=cache, workers=2)
    first = collect(pipe.numpy_batches(epochs=1))
    if where == "file":  # a new run over the same source reuses the filled file
        pipe = FacePipeline(tree, batch_size=12, shuffle=False, cache=cache, workers=2)
        assert pipe.cache.filled.all()
    for path in tree.glob("id*/*"):
        path.unlink()  # later epochs must not touch the files
    again = collect(pipe.numpy_batches(epochs=1, start_epoch=1))
    np.testing.assert_array_equal(first[0][0], again[0][0])
    assert pipe.skipped.count == 0


def test_cache_file_not_reused_for_another_source(tree):
    other = tree.parent / f"{tree.name}-other"
    for path in sorted(tree.glob("id*/*")):
        (other / path.parent.name).mkdir(parents=True, exist_ok=True)
        (other / path.parent.name / ("x" + path.name)).write_bytes(path.read_bytes())
    cache = tree.parent / f"{tree.name}-c.cache"
    list(FacePipeline(tree, batch_size=12, cache=cache, workers=1).numpy_batches(epochs=1))
    assert not FacePipeline(other, batch_size=12, cache=cache, workers=1).cache.filled.any()


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
    (x, _, t), = collect(pipe.numpy_batches(epochs=1))
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


def test_pk_batches_through_the_pipeline(tree):
    pipe = FacePipeline(tree, pk=(3, 2), seed=0, workers=2)
    assert pipe.batch_size == 6 and pipe.steps_per_epoch == 2
    for _, y in collect(pipe.numpy_batches(epochs=2)):
        assert sorted(np.unique(y, return_counts=True)[1].tolist()) == [2, 2, 2]
    assert pipe.describe()["pk"] == [3, 2]


def test_shared_data_pk_and_distillation_batches(shared_data):
    """The real sets: CelebA P x K batches; UTKFace teacher targets follow the flips."""
    from training.data.teacher import load_teacher

    pipe = FacePipeline(shared_data / "celeba", pk=(8, 4), seed=0, workers=2)
    assert pipe.num_classes == 249
    x, y = next(pipe.numpy_batches())
    assert x.shape == (32, 112, 112, 3) and -1.0 <= x.min() < x.max() <= 1.0
    assert sorted(np.unique(y, return_counts=True)[1].tolist()) == [4] * 8

    teacher = load_teacher(shared_data / "teacher" / "utkface.npz", shared_data).centered()
    flip_only = AugmentConfig(flip=True, crop_min_scale=1.0, brightness=0, contrast=0,
                              saturation=0)
    pipe = FacePipeline(teacher.image_list(), batch_size=16, seed=5, augment=flip_only,
                        targets=teacher.targets(), workers=2)
    x, y, t = next(pipe.numpy_batches())
    rows = pipe.epoch_plan(0)[0]
    assert (y == -1).all() and t.shape == (16, 128)
    for j, row in enumerate(rows):
        plain = (cv2.resize(np.asarray(Image.open(teacher.paths[row]).convert("RGB")),
                            (112, 112), interpolation=cv2.INTER_AREA) - 127.5) / 128
        mirrored = np.array_equal(x[j], plain[:, ::-1].astype(np.float32))
        assert mirrored or np.array_equal(x[j], plain.astype(np.float32))
        np.testing.assert_array_equal(t[j], (teacher.emb_flip if mirrored else teacher.emb)[row])


def test_numpy_path_needs_no_tensorflow(tree):
    """The JAX GPU machine has no TensorFlow: listing, decoding and batching must not import
    it (a meta-path finder makes any attempt fail)."""
    code = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras"):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
import training.data as d
pipe = d.FacePipeline({str(tree)!r}, batch_size=4, augment=d.AugmentConfig(), pk=(2, 2))
x, y = next(pipe.numpy_batches(processes=1))
assert x.shape == (4, 112, 112, 3), x.shape
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                         timeout=120, cwd=os.path.dirname(os.path.dirname(os.path.dirname(
                             os.path.abspath(__file__)))))
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
