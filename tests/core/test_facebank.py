"""Facebank storage and search against numpy, concurrency, a killed writer, model mismatch."""

import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import ROOT
from tfface.errors import DataError, ModelError
from tfface.facebank import Facebank


def unit(rng, n, d=16):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_mean_and_search_match_numpy(tmp_path):
    rng = np.random.default_rng(0)
    bank = Facebank(tmp_path / "b.db", model_id="m1", embedding_size=16)
    people = {f"p{i}": unit(rng, 3) for i in range(20)}
    for name, embs in people.items():
        for k, e in enumerate(embs):
            bank.add(name, e * (k + 1), source=f"{name}_{k}.jpg")  # scale must not matter
    assert len(bank) == 20
    assert dict(bank.identities()) == {n: 3 for n in people}
    names, matrix = bank.load_matrix()
    for name, row in zip(names, matrix):
        m = people[name].mean(axis=0)
        np.testing.assert_allclose(row, m / np.linalg.norm(m), atol=1e-6)
    queries = unit(rng, 50)
    got = bank.search(queries, threshold=0.3)
    ref_means = np.stack([people[n].mean(0) / np.linalg.norm(people[n].mean(0)) for n in names])
    sims = queries @ ref_means.T
    for q, m in enumerate(got):
        j = int(np.argmax(sims[q]))
        assert m.best == names[j] and m.similarity == pytest.approx(sims[q, j], abs=1e-5)
        assert m.known == (sims[q, j] >= 0.3)
        assert m.name == (names[j] if m.known else "unknown")


def test_readd_same_source_replaces(tmp_path):
    bank = Facebank(tmp_path / "b.db", model_id="m", embedding_size=4)
    bank.add("a", [1, 0, 0, 0], "x.jpg")
    assert bank.add("a", [0, 1, 0, 0], "x.jpg") == 1
    np.testing.assert_allclose(bank.embeddings_of("a"), [[0, 1, 0, 0]])


def test_rename_remove_and_errors(tmp_path):
    bank = Facebank(tmp_path / "b.db", model_id="m", embedding_size=4)
    bank.add("ann", [1, 0, 0, 0], "1")
    bank.add("bob", [0, 1, 0, 0], "2")
    bank.rename("ann", "anne")
    assert [n for n, _ in bank.identities()] == ["anne", "bob"]
    with pytest.raises(DataError, match="already exists"):
        bank.rename("anne", "bob")
    with pytest.raises(DataError, match="no identity"):
        bank.remove("zed")
    bank.remove("bob")
    assert bank.search([0, 1, 0, 0], 0.5)[0].best == "anne"
    assert bank.conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == 1
    with pytest.raises(DataError):
        bank.add("  ", [1, 0, 0, 0], "3")
    with pytest.raises(ModelError, match="4-d"):
        bank.add("c", [1, 0, 0], "4")
    bank.close()
    with pytest.raises(ModelError, match="model"):
        Facebank(tmp_path / "b.db", model_id="other-model")
    (tmp_path / "junk.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DataError, match="not a facebank"):
        Facebank(tmp_path / "junk.db", model_id="m")


def test_empty_bank_search(tmp_path):
    bank = Facebank(tmp_path / "b.db", model_id="m", embedding_size=4)
    assert bank.search([1, 0, 0, 0], 0.1)[0].name == "unknown"


WRITER = """
import sys, numpy as np
from tfface.facebank import Facebank
bank = Facebank(sys.argv[1], model_id="m", embedding_size=16)
rng = np.random.default_rng(1)
for i in range(int(sys.argv[2])):
    bank.add(f"p{i:05d}", rng.normal(size=16), f"img{i}.jpg")
    print(i, flush=True)
"""


def test_readers_work_while_enrolling(tmp_path):
    db = tmp_path / "b.db"
    Facebank(db, model_id="m", embedding_size=16).close()
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db), "300"], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    reader = Facebank(db, model_id="m")
    counts = []
    q = np.ones(16, np.float32)
    while proc.poll() is None:
        reader.search(q, 0.5)  # must never fail or block
        counts.append(len(reader.load_matrix()[0]))
        time.sleep(0.005)
    assert proc.returncode == 0
    assert counts == sorted(counts)  # readers see committed state only, growing
    assert len(reader.load_matrix()[0]) == 300


def test_killed_enroll_keeps_committed(tmp_path):
    db = tmp_path / "b.db"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db), "100000"], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    last = -1
    for line in proc.stdout:
        last = int(line.split()[0])
        if last >= 50:
            break
    proc.kill()
    proc.wait()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    n = conn.execute("SELECT COUNT(*) FROM identities").fetchone()[0]
    assert n >= last + 1  # everything reported as committed is there
    # every identity has its mean: nothing half-written
    assert conn.execute("SELECT COUNT(*) FROM identities WHERE mean IS NULL").fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == n
