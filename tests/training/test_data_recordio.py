"""The RecordIO reader against files written here by an independent writer (dmlc spec)."""

import io
import pickle
import struct

import numpy as np
import pytest
from PIL import Image

from training.data.pipeline import FacePipeline
from training.data.recordio import InsightFaceRecord, RecordError, RecordFile, unpack_header
from training.data.sources import RecordSource

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)


def write_part(fh, cflag, data):
    fh.write(MAGIC_BYTES)
    fh.write(struct.pack("<I", (cflag << 29) | len(data)))
    fh.write(data)
    fh.write(b"\0" * (-len(data) % 4))


def write_record(fh, payload):
    """dmlc RecordIOWriter::WriteRecord: split where the magic sits at an aligned offset."""
    start, parts = 0, []
    for i in range(0, len(payload) - len(payload) % 4, 4):
        if payload[i:i + 4] == MAGIC_BYTES:
            parts.append(payload[start:i])
            start = i + 4
    parts.append(payload[start:])
    if len(parts) == 1:
        write_part(fh, 0, parts[0])
        return
    for n, part in enumerate(parts):
        write_part(fh, 1 if n == 0 else (3 if n == len(parts) - 1 else 2), part)


def ir_header(label, key, labels=None):
    """MXNet recordio.pack: struct 'IfQQ' (flag, label, id, id2) [+ float32 labels]."""
    if labels is None:
        return struct.pack("<IfQQ", 0, float(label), key, 0)
    labels = np.asarray(labels, dtype="<f4")
    return struct.pack("<IfQQ", len(labels), 0.0, key, 0) + labels.tobytes()


def png_bytes(rgb):
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def write_rec(folder, payloads, num_classes=None):
    offsets = []
    with open(folder / "train.rec", "wb") as fh:
        for payload in payloads:
            offsets.append(fh.tell())
            write_record(fh, payload)
    with open(folder / "train.idx", "w") as fh:
        fh.writelines(f"{key}\t{off}\n" for key, off in enumerate(offsets))
    if num_classes is not None:
        (folder / "property").write_text(f"{num_classes},112,112")
    return offsets


def faces(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (112, 112, 3), dtype=np.uint8) for _ in range(n)]


def test_record_parts_padding_and_magic_inside(tmp_path):
    payloads = [b"abcde",                                    # 5 bytes: 3 bytes of padding
                b"xyzw" + MAGIC_BYTES + b"1234" + MAGIC_BYTES + b"tail!!",  # 3 parts
                MAGIC_BYTES + b"q",                          # magic first: empty first part
                b""]                                         # empty record
    write_rec(tmp_path, payloads)
    rec = RecordFile(tmp_path / "train.rec")
    assert len((tmp_path / "train.rec").read_bytes()) % 4 == 0
    assert list(rec) == payloads
    assert [rec.read_key(k) for k in (3, 1, 0, 2)] == [payloads[k] for k in (3, 1, 0, 2)]
    # Without the .idx the reader builds the same index by scanning.
    (tmp_path / "train.idx").unlink()
    assert RecordFile(tmp_path / "train.rec").index == rec.index


def test_unpack_multi_label_header():
    payload = ir_header(0, 7, labels=[3.0, 0.25, -1.5]) + b"IMG"
    header, body = unpack_header(payload)
    assert header.flag == 3 and header.id == 7 and body == b"IMG"
    np.testing.assert_array_equal(header.label, np.array([3.0, 0.25, -1.5], np.float32))
    header, body = unpack_header(ir_header(4, 9) + b"JPG")
    assert (header.flag, header.label, header.id, body) == (0, 4.0, 9, b"JPG")
    with pytest.raises(RecordError):
        unpack_header(struct.pack("<IfQQ", 5, 0.0, 0, 0) + b"\0" * 8)  # 5 labels announced


def insightface_payloads(images, classes):
    """Record 0 header, images 1..N, then one identity record per class (insightface)."""
    n = len(images)
    id_start = n + 1
    payloads = [ir_header(0, 0, labels=[id_start, id_start + max(classes) + 1])]
    for key, (img, c) in enumerate(zip(images, classes), start=1):
        # one multi-label image header, as some insightface sets store [label, extra]
        hdr = ir_header(0, key, labels=[c, 0.5]) if key == 2 else ir_header(c, key)
        payloads.append(hdr + png_bytes(img))
    for c in range(max(classes) + 1):
        keys = [k for k, cc in enumerate(classes, start=1) if cc == c]
        payloads.append(ir_header(0, id_start + c, labels=[keys[0], keys[-1] + 1]))
    return payloads


def test_insightface_layout(tmp_path):
    images, classes = faces(6), [0, 0, 0, 1, 1, 2]
    write_rec(tmp_path, insightface_payloads(images, classes), num_classes=3)
    ds = InsightFaceRecord(tmp_path)
    assert len(ds) == 6 and ds.num_classes == 3 and ds.image_size == (112, 112)
    assert ds.keys.tolist() == [1, 2, 3, 4, 5, 6]
    assert ds.labels.tolist() == classes
    ds = pickle.loads(pickle.dumps(ds))  # worker processes get a copy that reopens the file
    for i, img in enumerate(images):
        body, label = ds.read(i)
        assert label == classes[i]
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(body))), img)


def test_plain_rec_without_header_reads_labels(tmp_path):
    images = faces(3, seed=1)
    write_rec(tmp_path, [ir_header(c, k) + png_bytes(im)
                         for k, (im, c) in enumerate(zip(images, [2, 0, 1]))])
    ds = InsightFaceRecord(tmp_path)
    assert ds.keys.tolist() == [0, 1, 2] and ds.labels.tolist() == [2, 0, 1]
    assert ds.num_classes == 3
    # record 0 with a multi-label header ([class, extra]) is still an image, not a header
    write_rec(tmp_path, [ir_header(0, k, labels=[c, 0.5]) + png_bytes(im)
                         for k, (im, c) in enumerate(zip(images, [1, 0, 1]))])
    assert InsightFaceRecord(tmp_path).labels.tolist() == [1, 0, 1]


def test_identity_ranges_checked_against_image_labels(tmp_path):
    images, classes = faces(4, seed=3), [0, 0, 1, 1]
    payloads = insightface_payloads(images, classes)
    # identity records listed in the other order: positions no longer match image labels
    payloads[5], payloads[6] = payloads[6], payloads[5]
    write_rec(tmp_path, payloads)
    ds = InsightFaceRecord(tmp_path)
    assert ds.keys.tolist() == [1, 2, 3, 4] and ds.labels.tolist() == classes


def test_broken_records_raise_record_error(tmp_path):
    write_rec(tmp_path, [b"good", b"longer record"])
    raw = bytearray((tmp_path / "train.rec").read_bytes())
    (tmp_path / "train.rec").write_bytes(bytes(raw[:-6]))  # truncate the last record
    rec = RecordFile(tmp_path / "train.rec")
    assert rec.read_key(0) == b"good"
    with pytest.raises(RecordError, match="truncated"):
        rec.read_key(1)
    raw[12] ^= 0xFF  # corrupt the magic of record 1 (record 0 is 8 + 4 bytes)
    (tmp_path / "train.rec").write_bytes(bytes(raw))
    with pytest.raises(RecordError, match="bad magic"):
        RecordFile(tmp_path / "train.rec").read_key(1)


def test_scan_without_idx_resyncs_after_damage(tmp_path):
    payloads = [b"first", b"second!!", b"x" * 9, b"last"]
    offsets = write_rec(tmp_path, payloads)
    (tmp_path / "train.idx").unlink()
    raw = bytearray((tmp_path / "train.rec").read_bytes())
    raw[offsets[1]] ^= 0xFF  # record 1 lost
    (tmp_path / "train.rec").write_bytes(bytes(raw) + MAGIC_BYTES + b"\x10\0\0\0ab")  # cut tail
    rec = RecordFile(tmp_path / "train.rec")
    assert list(rec.index.values()) == [offsets[0], offsets[2], offsets[3]]
    assert [rec.read_key(k) for k in rec.index] == [b"first", b"x" * 9, b"last"]
    assert rec.damaged == [(offsets[1], offsets[2]), (len(raw), len(raw) + 10)]


def test_corrupt_record_skipped_and_counted_in_pipeline(tmp_path):
    images, classes = faces(4, seed=2), [0, 0, 1, 1]
    payloads = insightface_payloads(images, classes)
    payloads[3] = payloads[3][:40] + b"\xff\xd8 not a jpeg"  # image 3 (class 1) broken
    write_rec(tmp_path, payloads, num_classes=2)
    pipe = FacePipeline(RecordSource(tmp_path), batch_size=4, shuffle=False, workers=1)
    (x, y), = list(pipe.numpy_batches(epochs=1))
    assert pipe.skipped.count == 1 and "#3" in pipe.skipped.examples[0]
    assert y.tolist() == [0, 0, 1, 1]
    # the broken slot is refilled with the other image of the same identity (image 4)
    np.testing.assert_array_equal(x[2], x[3])
    np.testing.assert_allclose(x[3], (images[3].astype(np.float32) - 127.5) / 128)
