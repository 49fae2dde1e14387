"""Facebank search speed: 100k identities, 128-d, one query at a time.

Goal (issue 8): under 5 ms per query on the 2-core CI machine. Reference measured in the same
run: the naive search that reads every mean from SQLite for each query.

    .venv/bin/python bench/facebank_search.py [--identities 100000] [--dim 128]
"""

import argparse
import os
import sqlite3
import tempfile
import time

import numpy as np

from tfface.facebank import Facebank


def build(path, n, dim, seed=0):
    """Write n identities straight into the schema in one transaction (enrolling 100k photos
    through the model would take hours; the search does not care how rows got there)."""
    bank = Facebank(path, model_id="bench", embedding_size=dim)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    with bank.transaction() as conn:
        conn.executemany("INSERT INTO identities (name, mean, n_images, updated) VALUES (?,?,1,'')",
                         ((f"id{i:06d}", x[i].tobytes()) for i in range(n)))
    return bank, x


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--identities", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--queries", type=int, default=200)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bank.db")
        t0 = time.perf_counter()
        bank, x = build(path, args.identities, args.dim)
        print(f"built {args.identities} identities in {time.perf_counter() - t0:.1f} s")
        rng = np.random.default_rng(1)
        q = x[rng.integers(0, len(x), args.queries)] + 0.1 * rng.normal(size=(args.queries, args.dim))
        t0 = time.perf_counter()
        bank.load_matrix()
        print(f"first load of the matrix: {1e3 * (time.perf_counter() - t0):.1f} ms")
        times = []
        for v in q:
            t = time.perf_counter()
            m = bank.search(v, 0.5)[0]
            times.append(time.perf_counter() - t)
        ours = float(np.median(times))
        assert m.best.startswith("id")
        conn = sqlite3.connect(path)
        naive = []
        for v in q[:5]:
            t = time.perf_counter()
            rows = conn.execute("SELECT name, mean FROM identities").fetchall()
            best = max(rows, key=lambda r: float(np.dot(np.frombuffer(r[1], np.float32), v)))
            naive.append(time.perf_counter() - t)
        ref = float(np.median(naive))
        print(f"per query: {1e3 * ours:.2f} ms median, {1e3 * np.percentile(times, 95):.2f} ms p95"
              f" (goal < 5 ms); naive SQLite scan {1e3 * ref:.1f} ms; ratio {ref / ours:.0f}x")
        assert best[0].startswith("id")


if __name__ == "__main__":
    main()
