"""TensorFlow-free random access to the TFRecord shards written by ``training.data.tfrecord``.

TFRecord framing (tensorflow/core/lib/io/record_writer.cc), little-endian::

    uint64 length | uint32 masked_crc32c(length) | data[length] | uint32 masked_crc32c(data)

Each ``data`` is a serialized ``tf.train.Example`` with features ``image`` (bytes: the
encoded crop) and ``label`` (int64). This module indexes the shards (checking each length
CRC, so a broken shard is found when it is opened) and parses those two features from the
protobuf wire format itself, so the numpy loader reads TFRecords on machines without
TensorFlow (the JAX GPU box). The data CRC is not checked here (pure-Python CRC32C of every
image would cost more than decoding it); a damaged image fails to decode and is counted.
"""

import glob
import json
import os
import struct

import numpy as np

from tfface.errors import DataError

SHARD_GLOB = "{prefix}-*-of-*.tfrecord"


def _crc32c_table():
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data):
    """CRC-32C (Castagnoli) of bytes, as TFRecord uses."""
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked_crc(data):
    c = crc32c(data)
    return ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def shard_paths(spec):
    """Shard files for a prefix, a single ``.tfrecord`` or the ``PREFIX.json`` sidecar."""
    spec = os.fspath(spec)
    spec = spec.removesuffix(".json")
    if spec.endswith(".tfrecord") and os.path.isfile(spec):
        return [spec]
    return sorted(glob.glob(SHARD_GLOB.format(prefix=glob.escape(spec))))


def looks_like_tfrecord(spec):
    return bool(shard_paths(spec))


def read_sidecar(spec):
    """The converter's ``PREFIX.json`` (class names, size, counts) or {} when absent."""
    spec = os.fspath(spec)
    for candidate in (spec, spec + ".json", spec.rsplit("-", 3)[0] + ".json"):
        if candidate.endswith(".json") and os.path.isfile(candidate):
            with open(candidate, encoding="utf-8") as fh:
                return json.load(fh)
    return {}


def index_shard(path):
    """Byte offsets and lengths of the records of one shard.

    Returns:
        (offsets int64 (R,), lengths int64 (R,)) of each record's data.
    Raises:
        DataError: truncated shard or a length CRC mismatch.
    """
    offsets, lengths = [], []
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        pos = 0
        while pos < size:
            head = fh.read(12)
            if len(head) != 12:
                raise DataError(f"{path}: truncated record header at byte {pos}")
            (length,) = struct.unpack("<Q", head[:8])
            if struct.unpack("<I", head[8:])[0] != masked_crc(head[:8]):
                raise DataError(f"{path}: corrupt record length at byte {pos}")
            if pos + 16 + length > size:
                raise DataError(f"{path}: truncated record at byte {pos}")
            offsets.append(pos + 12)
            lengths.append(length)
            pos += 16 + length
            fh.seek(pos)
    return np.asarray(offsets, dtype=np.int64), np.asarray(lengths, dtype=np.int64)


def _varint(buf, pos):
    result, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise DataError("truncated protobuf varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf):
    """Yield (field number, wire type, value) of a protobuf message (types 0, 1, 2, 5)."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + n], pos + n
            if pos > end:
                raise DataError("truncated protobuf field")
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise DataError(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


def parse_example(data):
    """``{name: list of bytes | list of int | list of float}`` from a serialized Example."""
    out = {}
    for num, _, features in _fields(memoryview(data)):
        if num != 1:
            continue
        for fnum, _, entry in _fields(features):
            if fnum != 1:
                continue
            name, value = None, []
            for enum, _, item in _fields(entry):
                if enum == 1:
                    name = bytes(item).decode("utf-8")
                elif enum == 2:
                    value = _feature_values(item)
            if name is not None:
                out[name] = value
    return out


def _feature_values(feature):
    values = []
    for kind, _, lst in _fields(feature):
        for num, wire, item in _fields(lst):
            if num != 1:
                continue
            if kind == 1:
                values.append(bytes(item))
            elif kind == 3 and wire == 0:
                values.append(item - (1 << 64) if item >= 1 << 63 else item)
            elif kind == 3:  # packed int64
                pos = 0
                while pos < len(item):
                    v, pos = _varint(item, pos)
                    values.append(v - (1 << 64) if v >= 1 << 63 else v)
            elif kind == 2 and wire == 5:
                values.append(struct.unpack("<f", item)[0])
            elif kind == 2:  # packed float
                values.extend(np.frombuffer(bytes(item), dtype="<f4").tolist())
    return values


def index_path(prefix):
    return os.fspath(prefix) + ".index.npz"


def build_index(shards):
    """Scan shards: per record (shard number, data offset, data length, label)."""
    parts = []
    for number, path in enumerate(shards):
        offsets, lengths = index_shard(path)
        labels = np.empty(len(offsets), dtype=np.int64)
        with open(path, "rb") as fh:
            for j, (off, n) in enumerate(zip(offsets, lengths)):
                fh.seek(int(off))
                labels[j] = parse_example(fh.read(int(n))).get("label", [-1])[0]
        parts.append((np.full(len(offsets), number, dtype=np.int64), offsets, lengths, labels))
    if not parts:
        return {k: np.zeros(0, dtype=np.int64) for k in ("shard", "offset", "length", "label")}
    return {k: np.concatenate([p[i] for p in parts])
            for i, k in enumerate(("shard", "offset", "length", "label"))}


class TFRecordSource:
    """Random access to converter-written TFRecord shards, without TensorFlow.

    Uses ``PREFIX.index.npz`` (written by the converter) when present and consistent with the
    shard sizes; otherwise scans the shards once.
    """

    kind = "tfrecord"

    def __init__(self, spec):
        spec = os.fspath(spec)
        self.shards = shard_paths(spec)
        if not self.shards:
            raise DataError(f"{spec}: no TFRecord shards ({SHARD_GLOB.format(prefix=spec)})")
        self.meta = read_sidecar(spec)
        prefix = spec.removesuffix(".json")
        index = None
        if os.path.isfile(index_path(prefix)):
            with np.load(index_path(prefix)) as z:
                index = {k: z[k] for k in ("shard", "offset", "length", "label")}
            ends = index["offset"] + index["length"] + 4
            sizes = [os.path.getsize(p) for p in self.shards]
            if len(index["shard"]) and (index["shard"].max() >= len(sizes) or any(
                    ends[index["shard"] == s].max(initial=0) > sizes[s] for s in range(len(sizes)))):
                index = None  # stale index: shards were rewritten
        self.index = index if index is not None else build_index(self.shards)
        self.labels = self.index["label"]
        names = self.meta.get("class_names")
        self.num_classes = len(names) if names else int(self.labels.max(initial=-1)) + 1
        self.class_names = names or [str(c) for c in range(self.num_classes)]
        self.description = prefix
        self._fds = [os.open(p, os.O_RDONLY) for p in self.shards]

    def __len__(self):
        return len(self.labels)

    def __del__(self):
        for fd in getattr(self, "_fds", []):
            os.close(fd)
        self._fds = []

    def __getstate__(self):  # for worker processes: reopen the shards there
        state = dict(self.__dict__)
        state["_fds"] = []
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._fds = [os.open(p, os.O_RDONLY) for p in self.shards]

    def name(self, i):
        return f"{self.shards[int(self.index['shard'][i])]}#{i}"

    def example(self, i):
        """Parsed features of record ``i``."""
        n = int(self.index["length"][i])
        data = os.pread(self._fds[int(self.index["shard"][i])], n, int(self.index["offset"][i]))
        if len(data) != n:
            raise DataError(f"{self.name(i)}: truncated record")
        return parse_example(data)

    def read(self, i):
        image = self.example(i).get("image")
        if not image:
            raise DataError(f"{self.name(i)}: record has no 'image' feature")
        return image[0]
