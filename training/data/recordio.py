"""Read insightface ``train.rec`` / ``train.idx`` / ``property`` without MXNet.

MXNet RecordIO (dmlc-core ``recordio.h``), all integers little-endian:

1. Each record part is ``uint32 magic 0xced7230a``, ``uint32 lrecord``, data, zero padding to
   a multiple of 4 bytes. ``lrecord = cflag << 29 | length``.
2. ``cflag`` 0 is a whole record. The writer splits a record wherever the magic number sits at
   a 4-aligned offset of the data, dropping those 4 bytes: parts are 1 (first), 2 (middle),
   3 (last), and the reader puts the magic back between parts.
3. ``train.idx`` is text, one ``key<TAB>byte offset`` line per record.
4. A record's payload starts with ``IRHeader``, ``struct "IfQQ"`` (flag uint32, label float32,
   id uint64, id2 uint64; 24 bytes). ``flag > 0`` means ``flag`` float32 labels follow the
   header (and ``label`` is unused); the rest is the encoded image (JPEG in insightface sets).
5. In insightface sets record 0 is a header with ``flag > 0``: ``label[0]`` is the first
   identity record key (images are keys ``1..label[0]-1``) and ``label[1]`` is one past the
   last; identity record ``label[0] + c`` has labels ``(first image key, end key)`` of class c.
6. ``property`` is the text ``num_classes,height,width``.
"""

import os
import struct
from collections import namedtuple

import numpy as np

from tfface.errors import DataError

MAGIC = 0xCED7230A
_PART_HEAD = struct.Struct("<II")
IR_FORMAT = "<IfQQ"
IR_SIZE = struct.calcsize(IR_FORMAT)  # 24, same as MXNet's native "IfQQ" on little-endian
_LENGTH_MASK = (1 << 29) - 1

IRHeader = namedtuple("IRHeader", ["flag", "label", "id", "id2"])


class RecordError(DataError):
    """A record is truncated, has a bad magic number or a malformed header."""


def unpack_header(record):
    """Split a record payload into its :data:`IRHeader` and the remaining bytes.

    Returns:
        (IRHeader, bytes). ``header.label`` is a float, or a float32 (flag,) array when
        ``flag > 0``.
    Raises:
        RecordError: payload shorter than its header says.
    """
    if len(record) < IR_SIZE:
        raise RecordError(f"record of {len(record)} bytes is shorter than its {IR_SIZE}-byte header")
    header = IRHeader(*struct.unpack_from(IR_FORMAT, record))
    body = record[IR_SIZE:]
    if header.flag > 0:
        if len(body) < 4 * header.flag:
            raise RecordError(f"record header announces {header.flag} labels; "
                              f"only {len(body)} bytes follow")
        labels = np.frombuffer(body, dtype="<f4", count=header.flag).astype(np.float32)
        header = header._replace(label=labels)
        body = body[4 * header.flag:]
    return header, bytes(body)


def header_label(header):
    """The class label of an image record: ``label``, or the first of several labels."""
    label = header.label
    return int(label if np.isscalar(label) else label[0])


class RecordFile:
    """Random and sequential access to an MXNet ``.rec`` file (thread-safe: reads use pread).

    Args:
        rec_path: the ``.rec`` file.
        idx_path: its ``.idx`` file; None reads ``rec_path`` with ``.idx`` for ``.rec``,
            or builds the index by scanning the file when there is none.

    Attributes:
        index: ``{key: byte offset}``.
        damaged: ``(start, end)`` byte ranges the scan had to skip (only without ``.idx``;
            with one, a damaged record raises :class:`RecordError` when read, and the
            pipelines skip and count it).
    """

    def __init__(self, rec_path, idx_path=None):
        self.rec_path = os.fspath(rec_path)
        if not os.path.isfile(self.rec_path):
            raise DataError(f"{self.rec_path}: no such record file")
        self._fd = os.open(self.rec_path, os.O_RDONLY)
        self.size = os.fstat(self._fd).st_size
        if idx_path is None:
            guess = os.path.splitext(self.rec_path)[0] + ".idx"
            idx_path = guess if os.path.isfile(guess) else None
        self.idx_path = idx_path
        self.damaged = []
        self.index = read_idx(idx_path) if idx_path else self._scan_index()

    def __getstate__(self):  # for worker processes: reopen the file there
        state = dict(self.__dict__)
        state["_fd"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._fd = os.open(self.rec_path, os.O_RDONLY)

    def close(self):
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self):
        self.close()

    def __len__(self):
        return len(self.index)

    @property
    def keys(self):
        return list(self.index)

    def _read_exact(self, offset, n):
        data = os.pread(self._fd, n, offset)
        if len(data) != n:
            raise RecordError(f"{self.rec_path}: truncated at byte {offset} "
                              f"(wanted {n} bytes, file has {self.size})")
        return data

    def read_at(self, offset):
        """Read the record starting at byte ``offset``.

        Returns:
            (payload bytes, offset of the next record).
        Raises:
            RecordError: bad magic number, bad part sequence or truncated data.
        """
        parts = []
        while True:
            magic, lrec = _PART_HEAD.unpack(self._read_exact(offset, 8))
            if magic != MAGIC:
                raise RecordError(f"{self.rec_path}: bad magic 0x{magic:08x} at byte {offset}")
            cflag, length = lrec >> 29, lrec & _LENGTH_MASK
            if cflag not in (0, 1, 2, 3) or (cflag in (0, 1)) != (not parts):
                raise RecordError(f"{self.rec_path}: record part flag {cflag} out of sequence "
                                  f"at byte {offset}")
            parts.append(self._read_exact(offset + 8, length))
            offset += 8 + ((length + 3) & ~3)
            if cflag in (0, 3):
                return MAGIC.to_bytes(4, "little").join(parts), offset

    def read_key(self, key):
        """Payload of the record with ``key`` in the index."""
        try:
            offset = self.index[key]
        except KeyError as err:
            raise RecordError(f"{self.rec_path}: no record with key {key}") from err
        return self.read_at(offset)[0]

    def read_header(self, key):
        """The :data:`IRHeader` of record ``key``, reading only its first bytes."""
        try:
            offset = self.index[key]
        except KeyError as err:
            raise RecordError(f"{self.rec_path}: no record with key {key}") from err
        magic, lrec = _PART_HEAD.unpack(self._read_exact(offset, 8))
        if magic != MAGIC:
            raise RecordError(f"{self.rec_path}: bad magic 0x{magic:08x} at byte {offset}")
        head = os.pread(self._fd, min(lrec & _LENGTH_MASK, IR_SIZE + 4 * 64), offset + 8)
        if len(head) >= IR_SIZE:
            flag = struct.unpack_from("<I", head)[0]
            if len(head) >= IR_SIZE + 4 * flag:
                return unpack_header(head)[0]
        return unpack_header(self.read_key(key))[0]  # long label list or split record

    def __iter__(self):
        """Yield every payload in file order (stops with RecordError on a broken file)."""
        offset = 0
        while offset < self.size:
            payload, offset = self.read_at(offset)
            yield payload

    def _scan_index(self):
        """Key -> offset by walking the part headers (data is skipped, not read).

        A damaged stretch (bad magic, broken part sequence, truncated tail) does not stop the
        scan: it resumes at the next 4-aligned magic number, and the stretch is listed in
        ``self.damaged`` as ``(start, end)`` byte ranges.
        """
        index, offset, key, start = {}, 0, 0, None
        while offset < self.size:
            head = os.pread(self._fd, 8, offset)
            magic, lrec = _PART_HEAD.unpack(head) if len(head) == 8 else (None, 0)
            cflag, length = lrec >> 29, lrec & _LENGTH_MASK
            end = offset + 8 + ((length + 3) & ~3)
            if magic != MAGIC or end > self.size or (cflag in (0, 1)) == (start is not None):
                bad_from = offset if start is None or magic != MAGIC else start
                offset = self._resync(offset + 4)
                self.damaged.append((bad_from, offset))
                start = None
                continue
            if cflag in (0, 1):
                start = offset
            if cflag in (0, 3):
                index[key] = start
                key, start = key + 1, None
            offset = end
        return index

    def _resync(self, offset):
        """Next 4-aligned offset at or after ``offset`` holding the magic number."""
        offset = (offset + 3) & ~3
        magic = MAGIC.to_bytes(4, "little")
        while offset < self.size:
            chunk = os.pread(self._fd, 1 << 20, offset)
            pos = chunk.find(magic)
            while pos != -1 and pos % 4:
                pos = chunk.find(magic, pos + 1)
            if pos != -1:
                return offset + pos
            offset += max(4, len(chunk) - 3) & ~3
        return self.size


def read_idx(path):
    """Parse an ``.idx`` file into ``{key: byte offset}`` (file order kept)."""
    index = {}
    with open(path, encoding="ascii") as fh:
        for number, line in enumerate(fh, 1):
            fields = line.split()
            if not fields:
                continue
            try:
                key, offset = int(fields[0]), int(fields[1])
            except (ValueError, IndexError) as err:
                raise DataError(f"{path}:{number}: expected 'key<TAB>offset'; "
                                f"received {line.strip()!r}") from err
            index[key] = offset
    return index


def read_property(path):
    """Parse an insightface ``property`` file: ``(num_classes, height, width)``."""
    try:
        with open(path, encoding="ascii") as fh:
            values = [int(v) for v in fh.read().strip().split(",")]
        num_classes, height, width = values
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: expected 'num_classes,height,width' ({err})") from err
    return num_classes, height, width


class InsightFaceRecord:
    """An insightface training set: ``train.rec``, ``train.idx`` and ``property`` in a folder.

    Image keys and labels come from the record-0 header and identity records when present
    (no need to read 5 million image headers); otherwise every record is an image and its
    header gives the label (one pass over the headers).

    Attributes:
        keys: int64 (N,) record keys of the images.
        labels: int64 (N,) class of each image.
        unreadable: records left out because their header could not be read (only when
            labels come from image headers).
        num_classes: C (from ``property`` when present, else max label + 1).
        image_size: (height, width) from ``property``, or None.
    """

    def __init__(self, root, rec_name="train"):
        root = os.fspath(root)
        self.root = root
        rec = os.path.join(root, rec_name + ".rec")
        self.file = RecordFile(rec, os.path.join(root, rec_name + ".idx")
                               if os.path.isfile(os.path.join(root, rec_name + ".idx")) else None)
        prop = os.path.join(root, "property")
        self.image_size = None
        num_classes = None
        if os.path.isfile(prop):
            num_classes, height, width = read_property(prop)
            self.image_size = (height, width)
        self.unreadable = 0
        self.keys, self.labels = self._image_keys()
        self.num_classes = num_classes if num_classes is not None else int(self.labels.max()) + 1

    def _image_keys(self):
        header = None
        if 0 in self.file.index:
            try:
                header, _ = unpack_header(self.file.read_key(0))
            except RecordError:
                header = None
        if header is not None and header.flag >= 2:
            try:
                keys, labels = self._keys_from_identity_records(header)
            except RecordError:  # record 0 was a multi-label image, not an insightface header
                return self._keys_from_image_headers(list(self.file.index))
            if self._labels_agree(keys, labels):
                return keys, labels
            # Identity records do not follow the image labels: trust the images' headers.
            return self._keys_from_image_headers(range(1, int(header.label[0])))
        return self._keys_from_image_headers(list(self.file.index))

    def _keys_from_identity_records(self, header):
        id_start, id_end = int(header.label[0]), int(header.label[1])
        keys, labels = [], []
        for label, key in enumerate(range(id_start, id_end)):
            ident, _ = unpack_header(self.file.read_key(key))
            if ident.flag < 2:
                raise RecordError(f"{self.file.rec_path}: record {key} is not an identity range")
            first, end = int(ident.label[0]), int(ident.label[1])
            keys.append(np.arange(first, end, dtype=np.int64))
            labels.append(np.full(end - first, label, dtype=np.int64))
        if not keys:
            raise RecordError(f"{self.file.rec_path}: header record names no identity")
        return np.concatenate(keys), np.concatenate(labels)

    def _labels_agree(self, keys, labels, samples=16):
        """Insightface writers number classes in identity-record order; spot-check it."""
        for i in np.linspace(0, len(keys) - 1, num=min(samples, len(keys))).astype(int):
            try:
                if header_label(self.file.read_header(int(keys[i]))) != labels[i]:
                    return False
            except RecordError:
                continue
        return True

    def _keys_from_image_headers(self, candidates):
        """Image keys among ``candidates`` with labels read from their headers."""
        keys, labels = [], []
        for key in candidates:
            try:
                hdr = self.file.read_header(key)
            except RecordError:
                self.unreadable += 1
                continue
            keys.append(key)
            labels.append(header_label(hdr))
        if not keys:
            raise DataError(f"{self.file.rec_path}: no readable records")
        return np.asarray(keys, dtype=np.int64), np.asarray(labels, dtype=np.int64)

    def __len__(self):
        return len(self.keys)

    def read(self, i):
        """Encoded image bytes and label of image ``i`` (0..N-1, not the record key).

        Raises:
            RecordError: the record is missing, truncated or malformed.
        """
        header, body = unpack_header(self.file.read_key(int(self.keys[i])))
        return body, header_label(header)
