"""Inference speed of embedding models: per-face latency and faces per second.

    python -m eval.speed saved_models/m.keras saved_models/m.tflite saved_models/m_int8.tflite

Each ``.tflite`` file is timed with every ``--threads`` value (default 1 and 2), the Keras
model once (TensorFlow/JAX pick their own thread pools). Inputs are random aligned-face-sized
uint8 images, preprocessed as in evaluation; ``--warmup`` calls are not timed. Like
MobileFace's inference-time tool, the model call alone is timed (no detection/alignment).

Exit codes: 0 done, 2 bad input.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
from tqdm import tqdm

from eval import embedders
from tfface.errors import TFFaceError

PROG = "tfface-speed"


def time_embedder(embedder, batch_size=1, runs=50, warmup=5, seed=0, progress=False, desc=""):
    """Time ``embedder`` on random faces.

    Returns:
        dict: per-face latency in ms (mean, median, p90, min) and faces_per_s.
    """
    if runs < 1 or warmup < 0 or batch_size < 1:
        raise ValueError("runs >= 1, warmup >= 0 and batch_size >= 1 are required")
    h, w = embedder.input_size
    faces = np.random.default_rng(seed).integers(0, 256, (batch_size, h, w, 3), dtype=np.uint8)
    for _ in range(warmup):
        embedder(faces)
    times = np.empty(runs)
    for i in tqdm(range(runs), desc=desc or "time", unit="call", disable=not progress,
                  dynamic_ncols=True, leave=False):
        t0 = time.perf_counter()
        embedder(faces)
        times[i] = time.perf_counter() - t0
    per_face_ms = times * 1000.0 / batch_size
    return {
        "batch_size": int(batch_size),
        "runs": int(runs),
        "latency_ms_mean": float(per_face_ms.mean()),
        "latency_ms_median": float(np.median(per_face_ms)),
        "latency_ms_p90": float(np.percentile(per_face_ms, 90)),
        "latency_ms_min": float(per_face_ms.min()),
        "faces_per_s": float(batch_size * runs / times.sum()),
    }


def benchmark(paths, threads=(1, 2), batch_size=1, runs=50, warmup=5, progress=True):
    """Time every model file; returns a list of result dicts (one per model and thread count)."""
    results = []
    for path in paths:
        kind = embedders.model_kind(path)
        if kind == "npz":
            raise TFFaceError(f"{path} holds embeddings; eval.speed times .keras/.tflite models")
        settings = [None] if kind == "keras" else list(threads)
        for n in settings:
            emb = embedders.load_embedder(path, num_threads=n)
            desc = f"{os.path.basename(path)}" + (f" x{n}" if n else "")
            r = time_embedder(emb, batch_size, runs, warmup, progress=progress, desc=desc)
            results.append({"model": os.path.abspath(path), "kind": kind,
                            "threads": n if n is not None else "default",
                            "input_size": list(emb.input_size), **r})
    return results


def format_table(results):
    """Text table of :func:`benchmark` results."""
    head = f"{'model':<36} {'threads':>7} {'batch':>5} {'ms/face':>9} {'p90':>8} {'faces/s':>9}"
    rows = [head, "-" * len(head)]
    for r in results:
        rows.append(f"{os.path.basename(r['model'])[:36]:<36} {r['threads']!s:>7} "
                    f"{r['batch_size']:>5} {r['latency_ms_median']:>9.2f} "
                    f"{r['latency_ms_p90']:>8.2f} {r['faces_per_s']:>9.1f}")
    return "\n".join(rows)


def build_parser():
    p = argparse.ArgumentParser(prog=PROG, description="Per-face latency and faces/s of "
                                "embedding models (.keras and .tflite).")
    p.add_argument("models", nargs="+", help=".keras and/or .tflite files")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                   help="TFLite interpreter thread counts (default 1 2)")
    p.add_argument("--batch-size", type=int, default=1, help="faces per call (default 1)")
    p.add_argument("--runs", type=int, default=50, help="timed calls (default 50)")
    p.add_argument("--warmup", type=int, default=5, help="untimed calls first (default 5)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.runs < 1 or args.warmup < 0 or args.batch_size < 1 or min(args.threads) < 1:
        print(f"{PROG}: error: --runs, --batch-size and --threads must be >= 1, --warmup >= 0",
              file=sys.stderr)
        return 2
    try:
        results = benchmark(args.models, args.threads, args.batch_size, args.runs, args.warmup,
                            progress=not args.quiet)
    except (TFFaceError, OSError) as err:
        if args.debug:
            raise
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    print(format_table(results))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
