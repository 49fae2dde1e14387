"""Facebank: enrolled identities in one SQLite file, searched by vectorised cosine similarity.

Why SQLite: every change is a transaction (a killed enroll loses nothing already committed),
WAL mode lets readers search while someone enrolls, and nothing is unpickled. Each facebank is
bound to one model id, so embeddings of different models never mix.

Stored per identity: every enrolled image's unit embedding, and their mean re-normalised to
unit length (the vector that search compares against).
"""

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfface.errors import DataError, ModelError

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS identities (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    mean BLOB,
    n_images INTEGER NOT NULL DEFAULT 0,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS embeddings (
    id INTEGER PRIMARY KEY,
    identity_id INTEGER NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
    source TEXT NOT NULL,
    embedding BLOB NOT NULL,
    added TEXT NOT NULL,
    UNIQUE (identity_id, source)
);
CREATE INDEX IF NOT EXISTS embeddings_identity ON embeddings(identity_id);
"""


def _now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _unit(v):
    v = np.asarray(v, dtype=np.float32).reshape(-1)
    n = float(np.linalg.norm(v))
    if not np.isfinite(n) or n == 0.0:
        raise DataError("embedding is zero or not finite")
    return v / n


@dataclass(frozen=True)
class Match:
    """Best facebank match of one query embedding."""

    name: str  # identity name, or "unknown" below the threshold
    similarity: float  # cosine similarity to the best identity's mean
    best: str  # the best identity even when below the threshold ("" for an empty bank)
    known: bool

    def to_dict(self):
        return {"name": self.name, "similarity": round(self.similarity, 5), "best": self.best,
                "known": self.known}


class Facebank:
    """An SQLite facebank.

    Args:
        path: database file (created when missing).
        model_id: id of the model whose embeddings go in; a bank created with another model
            raises ModelError. None opens without checking (listing, renaming).
        embedding_size: embedding length, recorded on creation and checked after.
        timeout: seconds to wait for another writer's lock.
    """

    def __init__(self, path, model_id=None, embedding_size=None, timeout=30.0):
        self.path = str(path)
        if Path(self.path).is_dir():
            raise DataError(f"{self.path} is a directory, not a facebank file")
        try:
            self.conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None,
                                        check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.executescript(SCHEMA)
        except sqlite3.DatabaseError as err:
            raise DataError(f"{self.path}: not a facebank ({err})") from err
        self._bind(model_id, embedding_size)
        self._cache_version = None
        self._own_writes = 0
        self._names = ()
        self._matrix = np.zeros((0, 0), np.float32)

    # --- metadata ------------------------------------------------------------------------------
    def meta(self):
        return dict(self.conn.execute("SELECT key, value FROM meta").fetchall())

    def _bind(self, model_id, embedding_size):
        meta = self.meta()
        if model_id is None:
            self.model_id = meta.get("model_id")
            self.embedding_size = int(meta["embedding_size"]) if "embedding_size" in meta else None
            return
        if "model_id" in meta and meta["model_id"] != str(model_id):
            raise ModelError(f"facebank {self.path} holds embeddings of model "
                             f"{meta['model_id']!r}; this model is {model_id!r}. Use the same "
                             "model, or enroll into a new facebank")
        if embedding_size is not None and "embedding_size" in meta and \
                int(meta["embedding_size"]) != int(embedding_size):
            raise ModelError(f"facebank {self.path} holds {meta['embedding_size']}-d "
                             f"embeddings; this model gives {embedding_size}-d")
        if "model_id" not in meta:
            with self.transaction():
                self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('model_id', ?)",
                                  (str(model_id),))
                if embedding_size is not None:
                    self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('embedding_size', ?)",
                                      (str(int(embedding_size)),))
                self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('created', ?)", (_now(),))
        self.model_id = str(model_id)
        self.embedding_size = int(embedding_size) if embedding_size is not None else (
            int(meta["embedding_size"]) if "embedding_size" in meta else None)

    def transaction(self):
        """Context manager: BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error)."""
        self._own_writes = getattr(self, "_own_writes", 0) + 1
        return _Transaction(self.conn)

    def close(self):
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- writing -------------------------------------------------------------------------------
    def add(self, name, embedding, source):
        """Add one image's embedding to ``name`` (created if new) and update its mean, in one
        transaction. Re-adding the same source replaces its embedding. Returns the number of
        images of the identity."""
        name = str(name).strip()
        if not name:
            raise DataError("identity name must not be empty")
        emb = _unit(embedding)
        if self.embedding_size is not None and emb.size != self.embedding_size:
            raise ModelError(f"embedding has {emb.size} values; facebank holds "
                             f"{self.embedding_size}-d")
        with self.transaction():
            row = self.conn.execute("SELECT id FROM identities WHERE name = ?", (name,)).fetchone()
            if row is None:
                ident = self.conn.execute(
                    "INSERT INTO identities (name, updated) VALUES (?, ?)", (name, _now())
                ).lastrowid
            else:
                ident = row[0]
            self.conn.execute(
                "INSERT OR REPLACE INTO embeddings (identity_id, source, embedding, added) "
                "VALUES (?, ?, ?, ?)", (ident, str(source), emb.tobytes(), _now()))
            return self._update_mean(ident)

    def _update_mean(self, ident):
        rows = self.conn.execute("SELECT embedding FROM embeddings WHERE identity_id = ?",
                                 (ident,)).fetchall()
        embs = np.stack([np.frombuffer(r[0], np.float32) for r in rows])
        mean = _unit(embs.mean(axis=0))
        self.conn.execute("UPDATE identities SET mean = ?, n_images = ?, updated = ? "
                          "WHERE id = ?", (mean.tobytes(), len(rows), _now(), ident))
        return len(rows)

    def rename(self, old, new):
        new = str(new).strip()
        if not new:
            raise DataError("new name must not be empty")
        with self.transaction():
            if self.conn.execute("SELECT 1 FROM identities WHERE name = ?", (new,)).fetchone():
                raise DataError(f"identity {new!r} already exists")
            cur = self.conn.execute("UPDATE identities SET name = ?, updated = ? WHERE name = ?",
                                    (new, _now(), old))
            if cur.rowcount == 0:
                raise DataError(f"no identity named {old!r}")

    def remove(self, name):
        with self.transaction():
            cur = self.conn.execute("DELETE FROM identities WHERE name = ?", (name,))
            if cur.rowcount == 0:
                raise DataError(f"no identity named {name!r}")

    # --- reading -------------------------------------------------------------------------------
    def identities(self):
        """[(name, n_images)] sorted by name."""
        return self.conn.execute(
            "SELECT name, n_images FROM identities ORDER BY name").fetchall()

    def embeddings_of(self, name):
        rows = self.conn.execute(
            "SELECT e.embedding FROM embeddings e JOIN identities i ON e.identity_id = i.id "
            "WHERE i.name = ? ORDER BY e.id", (name,)).fetchall()
        return np.stack([np.frombuffer(r[0], np.float32) for r in rows]) if rows else None

    def __len__(self):
        return self.conn.execute("SELECT COUNT(*) FROM identities").fetchone()[0]

    def _refresh(self):
        """Reload the mean matrix when the database changed (cheap check via data_version and
        the identities table's state)."""
        # data_version changes when another connection commits; our own writes bump a counter.
        version = (self.conn.execute("PRAGMA data_version").fetchone()[0], self._own_writes)
        if version == self._cache_version:
            return
        rows = self.conn.execute(
            "SELECT name, mean FROM identities WHERE mean IS NOT NULL ORDER BY id").fetchall()
        self._names = tuple(r[0] for r in rows)
        self._matrix = (np.stack([np.frombuffer(r[1], np.float32) for r in rows])
                        if rows else np.zeros((0, self.embedding_size or 0), np.float32))
        self._cache_version = version

    def load_matrix(self):
        """(names tuple, float32 (N, D) unit means) of all identities (shared, do not modify)."""
        self._refresh()
        return self._names, self._matrix

    def search(self, queries, threshold):
        """Best identity for each query embedding (N, D) or (D,): a list of :class:`Match`."""
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None]
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        names, matrix = self.load_matrix()
        if not names:
            return [Match("unknown", -1.0, "", False) for _ in q]
        if matrix.shape[1] != q.shape[1]:
            raise ModelError(f"query embeddings are {q.shape[1]}-d; facebank holds "
                             f"{matrix.shape[1]}-d")
        # One query: a matrix-vector product (GEMV) reads the means once and beats the GEMM.
        sims = (matrix @ q[0])[None] if len(q) == 1 else q @ matrix.T
        best = np.argmax(sims, axis=1)
        out = []
        for i, j in enumerate(best):
            s = float(sims[i, j])
            known = s >= threshold
            out.append(Match(names[j] if known else "unknown", s, names[j], known))
        return out


class _Transaction:
    def __init__(self, conn):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")
        return False
