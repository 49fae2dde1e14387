"""A cache of decoded crops below the per-epoch shuffle, shared by both pipeline backends."""

import hashlib
import json
import os

import numpy as np


class DecodedCache:
    """Decoded uint8 crops kept after their first read: in memory, or in a file (memmap).

    Args:
        n: number of images.
        size: crop side.
        path: None for memory; a file path for a disk cache. A later run reuses the file
            when ``PATH.json`` records the same ``key`` (source fingerprint and size);
            otherwise the file is started afresh.
        key: fingerprint of the source (see :func:`source_fingerprint`).
    """

    def __init__(self, n, size, path=None, key=""):
        self.n, self.size, self.key = n, size, key
        self.path = None if path is None else os.fspath(path)
        shape = (n, size, size, 3)
        if self.path is None:
            self.images = np.zeros(shape, dtype=np.uint8)
            self.filled = np.zeros(n, dtype=bool)
            return
        total = int(np.prod(shape)) + n
        meta = {"n": n, "size": size, "key": key}
        reuse = os.path.isfile(self.path) and os.path.getsize(self.path) == total
        try:
            with open(self.path + ".json", encoding="utf-8") as fh:
                reuse = reuse and json.load(fh) == meta
        except (OSError, ValueError):
            reuse = False
        raw = np.memmap(self.path, dtype=np.uint8, mode="r+" if reuse else "w+", shape=(total,))
        if not reuse:
            with open(self.path + ".json", "w", encoding="utf-8") as fh:
                json.dump(meta, fh)
        self.images = raw[: total - n].reshape(shape)
        self.filled = raw[total - n:].view(bool)

    def __getstate__(self):  # worker processes reopen a file cache (memory ones don't travel)
        return {"n": self.n, "size": self.size, "path": self.path, "key": self.key}

    def __setstate__(self, state):
        self.__init__(**state)

    def get(self, i):
        return self.images[i] if self.filled[i] else None

    def put(self, i, rgb):
        self.images[i] = rgb
        self.filled[i] = True


def source_fingerprint(source):
    """sha1 of every image's name and label: a cache file follows its source."""
    digest = hashlib.sha1()
    for i in range(len(source)):
        digest.update(f"{source.name(i)}\t{int(source.labels[i])}\n".encode())
    return digest.hexdigest()
