"""Edge runtime vs the face_recognition library (dlib), measured in the same run.

Per-face embedding latency of each TFLite variant (1 and 2 threads) and end-to-end verification
of two 640x480 photos (load, detect, align, embed, compare), against face_recognition's
`face_encodings` (dlib ResNet) and its end-to-end HOG-detect + encode + compare.
Goals (issue 7): embedding at least 15x faster than dlib's, end-to-end at least 5x.

dlib takes minutes to build, so it lives in its own interpreter (never in CI):

    python3 -m venv /tmp/dlib-venv
    /tmp/dlib-venv/bin/pip install dlib face_recognition face_recognition_models
    .venv/bin/python bench/edge_vs_dlib.py --dlib-python /tmp/dlib-venv/bin/python
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]

DLIB_SCRIPT = r"""
import json, sys, time
import numpy as np
import face_recognition as fr
a, b, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
img = fr.load_image_file(a)
box = fr.face_locations(img)
assert box, "dlib found no face"
fr.face_encodings(img, box)
t = []
for _ in range(runs):
    s = time.perf_counter(); fr.face_encodings(img, box); t.append(time.perf_counter() - s)
e2e = []
for _ in range(max(3, runs // 5)):
    s = time.perf_counter()
    ea = fr.face_encodings(fr.load_image_file(a))[0]
    eb = fr.face_encodings(fr.load_image_file(b))[0]
    same = bool(np.linalg.norm(ea - eb) <= 0.6)
    e2e.append(time.perf_counter() - s)
print(json.dumps({"embed_ms": 1e3 * float(np.median(t)), "e2e_ms": 1e3 * float(np.median(e2e)),
                  "same": same}))
"""


def make_photos(folder):
    """Two 640x480 photos of one person: a sample face scaled into a larger scene."""
    out = []
    for i, name in enumerate(("person_a_1.jpg", "person_a_2.jpg")):
        face = cv2.imread(str(ROOT / "samples" / name))
        canvas = np.full((480, 640, 3), (90, 110, 100), np.uint8)
        big = cv2.resize(face, (300, 300))
        x = 120 + 100 * i
        canvas[90:390, x:x + 300] = big
        path = os.path.join(folder, f"scene_{i}.jpg")
        cv2.imwrite(path, canvas, [cv2.IMWRITE_JPEG_QUALITY, 92])
        out.append(path)
    return out


def ours(model, photos, threads, runs):
    from tfface.verifier import FaceVerifier

    v = FaceVerifier(model, detector="tflite", num_threads=threads)
    crop = v.align(photos[0])
    v.embedder(crop[None])
    t = []
    for _ in range(runs):
        s = time.perf_counter()
        v.embedder(crop[None])
        t.append(time.perf_counter() - s)
    v.verify(*photos)
    e2e = []
    for _ in range(max(3, runs // 5)):
        s = time.perf_counter()
        r = v.verify(*photos)
        e2e.append(time.perf_counter() - s)
    return 1e3 * float(np.median(t)), 1e3 * float(np.median(e2e)), r.same


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dlib-python", required=True, help="interpreter with face_recognition")
    p.add_argument("--models", nargs="+", default=[
        "saved_models/mobilefacenet/mobilefacenet_int8.tflite",
        "saved_models/mobilefacenet/mobilefacenet_float16.tflite",
        "saved_models/dlib_resnet/dlib_resnet_int8.tflite",
        "saved_models/dlib_resnet/dlib_resnet_float16.tflite"])
    p.add_argument("--runs", type=int, default=30)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        photos = make_photos(tmp)
        res = subprocess.run([args.dlib_python, "-c", DLIB_SCRIPT, *photos, str(args.runs)],
                             capture_output=True, text=True, check=True)
        ref = json.loads(res.stdout.strip().splitlines()[-1])
        print(f"face_recognition (dlib): embedding {ref['embed_ms']:.1f} ms per face, "
              f"end-to-end {ref['e2e_ms']:.1f} ms for two 640x480 photos (same={ref['same']})")
        for model in args.models:
            path = ROOT / model
            if not path.is_file():
                print(f"{model}: not found, skipped")
                continue
            for threads in (1, 2):
                emb, e2e, same = ours(str(path), photos, threads, args.runs)
                print(f"{model} threads={threads}: embedding {emb:.2f} ms "
                      f"({ref['embed_ms'] / emb:.1f}x faster), end-to-end {e2e:.1f} ms "
                      f"({ref['e2e_ms'] / e2e:.1f}x faster), same={same}")


if __name__ == "__main__":
    sys.exit(main())
