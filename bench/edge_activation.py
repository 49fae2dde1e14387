"""PReLU vs ReLU MobileFaceNet as full-int8 (and float16) TFLite: per-face latency.

The guide warns that full-int8 PReLU runs slowly in TFLite; this measures it before choosing
the edge model's activation. Random weights (speed does not depend on them), int8 calibrated
on real aligned crops.

    .venv/bin/python bench/edge_activation.py --crops DIR_OF_112_CROPS [--runs 50]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np


def latency(path, crops, threads, runs):
    from tflite.embedder import TFLiteEmbedder

    emb = TFLiteEmbedder(path, num_threads=threads, batch_size=1)
    for c in crops[:5]:
        emb(c[None])
    t = []
    for i in range(runs):
        s = time.perf_counter()
        emb(crops[i % len(crops)][None])
        t.append(time.perf_counter() - s)
    return 1e3 * float(np.median(t))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--crops", required=True)
    p.add_argument("--runs", type=int, default=50)
    args = p.parse_args()
    from tfface.export.cli import list_crops

    crops = list_crops(args.crops, (112, 112), 100)
    with tempfile.TemporaryDirectory() as tmp:
        from training.models import get_backbone

        for act in ("prelu", "relu"):
            get_backbone("mobilefacenet", activation=act).save(os.path.join(tmp, f"{act}.keras"))
            subprocess.run([sys.executable, "-m", "tfface.export.cli",
                            os.path.join(tmp, f"{act}.keras"), "--out", tmp, "--variants",
                            "float16,int8", "--representative", args.crops,
                            "--num-representative", "100"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rows = {}
        for act in ("prelu", "relu"):
            for variant in ("float16", "int8"):
                path = os.path.join(tmp, f"{act}_{variant}.tflite")
                rows[(act, variant)] = [latency(path, crops, th, args.runs) for th in (1, 2)]
                print(f"{act:5s} {variant:7s} 1 thread {rows[(act, variant)][0]:6.2f} ms, "
                      f"2 threads {rows[(act, variant)][1]:6.2f} ms")
        for variant in ("float16", "int8"):
            r = rows[("prelu", variant)][0] / rows[("relu", variant)][0]
            print(f"{variant}: PReLU / ReLU latency ratio (1 thread) = {r:.2f}")


if __name__ == "__main__":
    main()
