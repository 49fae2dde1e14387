"""TFRecord round trip: converter CLI -> TensorFlow's own parser and the TF-free reader."""

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from training.data import tfrecord_index
from training.data.pipeline import FacePipeline
from training.data.tfrecord import main, tfrecord_dataset
from training.data.tfrecord_index import TFRecordSource, crc32c

tf = pytest.importorskip("tensorflow")


def smooth(rng, size):
    """A smooth random image: JPEG keeps it within a few levels (noise would not survive)."""
    return cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (size, size),
                      interpolation=cv2.INTER_CUBIC)


@pytest.fixture
def tree(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    images = {}
    for c, name in enumerate(["ann", "ben", "cid"]):
        (src / name).mkdir(parents=True)
        for i in range(3):
            img = smooth(rng, 112)
            path = src / name / f"{i}.{'jpg' if i else 'png'}"
            Image.fromarray(img).save(path)
            images[path] = c
    big = smooth(rng, 140)
    Image.fromarray(big).save(src / "cid" / "big.png")   # resized on the way in
    images[src / "cid" / "big.png"] = 2
    (src / "ben" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 nope")  # skipped, counted
    return src, images


def test_crc32c_known_vector():
    assert crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value


def test_round_trip(tree, tmp_path, capsys):
    src, images = tree
    prefix = tmp_path / "out" / "faces"
    assert main([str(src), str(prefix), "--shards", "3"]) == 0
    assert "skipped 1" in capsys.readouterr().out
    shards = sorted((tmp_path / "out").glob("faces-*-of-00003.tfrecord"))
    assert len(shards) == 3
    meta = json.loads((tmp_path / "out" / "faces.json").read_text())
    assert meta["class_names"] == ["ann", "ben", "cid"] and meta["num_images"] == 10
    assert meta["skipped"] == 1 and "broken.jpg" in meta["skipped_files"][0]

    # 1. TensorFlow's own reader and parser (independent of our framing/protobuf code).
    feats = {"image": tf.io.FixedLenFeature([], tf.string),
             "label": tf.io.FixedLenFeature([], tf.int64)}
    tf_records = []
    for shard in shards:
        for raw in tf.data.TFRecordDataset(str(shard)).as_numpy_iterator():
            ex = tf.io.parse_single_example(raw, feats)
            tf_records.append((ex["image"].numpy(), int(ex["label"])))
    assert len(tf_records) == 10
    expected = {}
    for path, label in images.items():
        rgb = np.asarray(Image.open(path).convert("RGB"))
        if rgb.shape[0] != 112:
            rgb = cv2.resize(rgb, (112, 112), interpolation=cv2.INTER_AREA)
        expected[rgb.tobytes()] = (label, path)
    for data, label in tf_records:
        rgb = tf.io.decode_image(data, channels=3).numpy()
        key = rgb.tobytes()
        if key not in expected:  # PNG sources are re-encoded as JPEG: lossy, compare close
            diffs = {k: np.abs(np.frombuffer(k, np.uint8).astype(int) - rgb.reshape(-1)).mean()
                     for k in expected}
            key = min(diffs, key=diffs.get)
            assert diffs[key] < 3.0
        assert expected.pop(key)[0] == label
    assert not expected
    jpg = (src / "ann" / "1.jpg").read_bytes()
    assert any(data == jpg for data, _ in tf_records)  # aligned JPEGs stored byte for byte

    # 2. The TF-free random-access reader: same records, with and without the index file.
    source = TFRecordSource(prefix)
    assert sorted((bytes(source.read(i)), int(source.labels[i])) for i in range(10)) == sorted(
        tf_records)
    (tmp_path / "out" / "faces.index.npz").unlink()
    rescanned = TFRecordSource(str(prefix) + ".json")
    np.testing.assert_array_equal(rescanned.labels, source.labels)
    assert rescanned.class_names == ["ann", "ben", "cid"]

    streamed = [(bytes(img), int(lbl)) for img, lbl in tfrecord_dataset(prefix).as_numpy_iterator()]
    assert sorted(streamed) == sorted(tf_records)

    # 3. A pipeline over the shards.
    pipe = FacePipeline(prefix, batch_size=5, workers=1)
    batches = list(pipe.numpy_batches(epochs=1))
    assert len(batches) == 2 and pipe.skipped.count == 0
    assert sorted(np.concatenate([b[1] for b in batches]).tolist()) == sorted(
        lbl for _, lbl in tf_records)


def test_corrupt_shard_and_bad_cli(tree, tmp_path, capsys):
    src, _ = tree
    prefix = tmp_path / "x"
    assert main([str(src), str(prefix), "--shards", "1"]) == 0
    shard = next(tmp_path.glob("x-*.tfrecord"))
    raw = bytearray(shard.read_bytes())
    raw[3] ^= 0x55  # damage the first length field: its CRC no longer matches
    shard.write_bytes(bytes(raw))
    capsys.readouterr()
    with pytest.raises(tfrecord_index.DataError, match="corrupt record length"):
        tfrecord_index.index_shard(shard)
    assert main([str(tmp_path / "nowhere"), str(prefix)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err
    Image.fromarray(np.zeros((90, 120, 3), np.uint8)).save(src / "ann" / "photo.png")
    assert main([str(src), str(prefix)]) == 2  # a raw (non-square) photo: align first
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tfface-align" in err
