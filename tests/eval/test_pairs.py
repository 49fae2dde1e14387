"""Pair readers: LFW pairs.txt, CSV, insightface .bin and its restricted unpickler."""

import os
import pickle

import cv2
import numpy as np
import pytest

from eval import pairs
from tfface.errors import DataError

LFW_TINY = """2\t2
Alice\t1\t2
Bob\t1\t3
Alice\t1\tBob\t2
Carol\t4\tDave\t1
Eve\t1\t2
Alice\t2\t3
Bob\t1\tEve\t2
Dave\t1\tAlice\t3
"""


def test_read_lfw_pairs(tmp_path):
    p = tmp_path / "pairs.txt"
    p.write_text(LFW_TINY)
    got = pairs.read_lfw_pairs(p, tmp_path / "img")
    root = os.path.abspath(tmp_path / "img")
    assert got[0] == (os.path.join(root, "Alice", "Alice_0001.jpg"),
                      os.path.join(root, "Alice", "Alice_0002.jpg"), True)
    assert got[3] == (os.path.join(root, "Carol", "Carol_0004.jpg"),
                      os.path.join(root, "Dave", "Dave_0001.jpg"), False)
    assert [s for *_, s in got] == [True, True, False, False] * 2
    ps = pairs.load_lfw_pairs(p, tmp_path / "img")
    assert ps.name == tmp_path.name  # pairs.txt: named after its folder
    # Folds are the file's blocks of 2 x 2 pairs, not random.
    np.testing.assert_array_equal(ps.folds, [0, 0, 0, 0, 1, 1, 1, 1])
    assert ps.pair_keys() == got
    assert len(ps.keys) == len(set(ps.keys)) == 10
    assert ps.identities[ps.keys.index(got[3][1])] == "Dave"


@pytest.mark.parametrize("text, match", [
    ("2 2\nAlice 1\n", r"pairs.txt:2: expected 'name n1 n2'"),
    ("2 2\nAlice 1 x\n", r"pairs.txt:2: image number 'x'"),
    ("ten\nAlice 1 2\n", r"pairs.txt:1: expected a header"),
    ("2 2\nAlice 1 2\n", "header says 2 sets x 2 x 2 = 8 pairs; the file has 1"),
    ("", "empty pairs file"),
])
def test_malformed_lfw_pairs(tmp_path, text, match):
    p = tmp_path / "pairs.txt"
    p.write_text(text)
    with pytest.raises(DataError, match=match):
        pairs.read_lfw_pairs(p, tmp_path)


def test_shared_lfw_pairs(shared_data):
    lfw = shared_data / "lfw"
    ps = pairs.load_lfw_pairs(lfw / "pairs.txt", lfw / "images")
    assert ps.n_pairs == 6000 and ps.issame.sum() == 3000
    assert len(ps.keys) == 7701  # the README: 7,701 images used by pairs.txt
    assert all(os.path.isfile(k) for k in ps.keys[:50])
    np.testing.assert_array_equal(np.bincount(ps.folds), [600] * 10)
    for k in range(10):  # each block of 600: 300 matched then 300 mismatched
        block = ps.issame[600 * k: 600 * (k + 1)]
        assert block[:300].all() and not block[300:].any()


def test_csv_pairs(tmp_path):
    p = tmp_path / "p.csv"
    p.write_text("path1,path2,same,fold\na/1.jpg,a/2.jpg,1,0\na/1.jpg,b/1.jpg,different,1\n")
    ps = pairs.load_csv_pairs(p, tmp_path / "root")
    assert ps.keys == [os.path.join(os.path.abspath(tmp_path / "root"), x)
                       for x in ("a/1.jpg", "a/2.jpg", "b/1.jpg")]
    np.testing.assert_array_equal(ps.left, [0, 0])
    np.testing.assert_array_equal(ps.right, [1, 2])
    np.testing.assert_array_equal(ps.issame, [True, False])
    np.testing.assert_array_equal(ps.folds, [0, 1])
    assert ps.identities == ["a", "a", "b"]
    q = tmp_path / "q.csv"  # no header, paths relative to the CSV's folder
    q.write_text("x/1.png,y/1.png,false\n")
    ps = pairs.load_csv_pairs(q)
    assert ps.folds is None and ps.keys[0] == os.path.join(os.path.abspath(tmp_path), "x/1.png")
    q.write_text("x/1.png,y/1.png,maybe\n")
    with pytest.raises(DataError, match=r"q.csv:1: 'same' must be"):
        pairs.load_csv_pairs(q)
    q.write_text("x/1.png,y/1.png\n")
    with pytest.raises(DataError, match="expected columns"):
        pairs.load_csv_pairs(q)


def _jpeg(seed, size=112):
    img = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize("labels_as_array", [False, True])
def test_read_valid_bin(tmp_path, labels_as_array):
    images = [_jpeg(i) for i in range(6)]
    issame = [True, False, True]
    labels = np.array(issame) if labels_as_array else issame
    p = tmp_path / "tiny.bin"
    p.write_bytes(pickle.dumps((images, labels), protocol=2))
    ps = pairs.load_bin(p)
    assert ps.kind == "bin" and ps.name == "tiny"
    assert ps.encoded == images
    np.testing.assert_array_equal(ps.issame, issame)
    np.testing.assert_array_equal(ps.left, [0, 2, 4])
    np.testing.assert_array_equal(ps.right, [1, 3, 5])
    assert ps.identities is None


class _SystemPayload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _ExecPayload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


@pytest.mark.parametrize("payload", [_SystemPayload, _ExecPayload])
def test_malicious_bin_is_refused(tmp_path, payload):
    marker = tmp_path / "pwned"
    blob = pickle.dumps(([_jpeg(0), payload(marker)], [True]), protocol=2)
    # The payload is live: a plain unpickler runs it.
    pickle.loads(blob)
    assert marker.exists()
    marker.unlink()
    p = tmp_path / "evil.bin"
    p.write_bytes(blob)
    with pytest.raises(DataError, match="refusing to load pickled global"):
        pairs.load_bin(p)
    assert not marker.exists()


def test_bin_with_object_array_or_wrong_shape_is_refused(tmp_path):
    p = tmp_path / "obj.bin"
    p.write_bytes(pickle.dumps((np.array([b"a", b"b"], dtype=object), [True])))
    with pytest.raises(DataError, match="dtype object"):
        pairs.load_bin(p)
    p.write_bytes(pickle.dumps(([_jpeg(0)] * 3, [True])))
    with pytest.raises(DataError, match="3 images for 1 pairs"):
        pairs.load_bin(p)
    p.write_bytes(pickle.dumps({"images": []}))
    with pytest.raises(DataError, match="expected a pickle of"):
        pairs.load_bin(p)
    p.write_bytes(b"not a pickle at all")
    with pytest.raises(DataError, match="not an insightface .bin"):
        pairs.load_bin(p)


def test_load_pairs_dispatch_and_errors(tmp_path):
    with pytest.raises(DataError, match="pairs file not found"):
        pairs.load_pairs(tmp_path / "none.txt", tmp_path)
    p = tmp_path / "pairs.txt"
    p.write_text(LFW_TINY)
    with pytest.raises(DataError, match="needs the image folder"):
        pairs.load_pairs(p)
    assert pairs.load_pairs(p, tmp_path).kind == "lfw"
