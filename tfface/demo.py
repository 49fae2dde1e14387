"""`make demo`: the main job on the bundled sample photos with the shipped default model.

1. Aligns every photo in samples/ (MTCNN, 5 landmarks, ArcFace 112x112 template).
2. Verifies the sample pairs (same person and different people) with the default model
   (full-int8 TFLite MobileFaceNet in saved_models/, TensorFlow-free runtime) and prints the
   outcome of each pair.
"""

import argparse
import itertools
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def person_of(path):
    """samples/person_a_1.jpg -> person_a (the demo's naming convention)."""
    return Path(path).stem.rsplit("_", 1)[0]


def main(argv=None):
    p = argparse.ArgumentParser(prog="tfface-demo", description=__doc__.splitlines()[0])
    p.add_argument("--samples", default=str(ROOT / "samples"), help="folder of photos")
    p.add_argument("--out", default=str(ROOT / "out" / "demo"), help="output folder")
    p.add_argument("--model", default=None, help="model (default: the shipped default model)")
    args = p.parse_args(argv)

    from tfface.cli.align import main as align_main
    from tfface.errors import TFFaceError

    crops = os.path.join(args.out, "aligned")
    print(f"1. Aligning the photos in {args.samples} (MTCNN, 5 landmarks, ArcFace 112x112)")
    rc = align_main([args.samples, crops, "--detector", "tflite"])
    if rc != 0:
        return rc
    for path in sorted(Path(crops).rglob("*.png")):
        print(f"   {path}")

    photos = sorted(str(p) for p in Path(args.samples).glob("*.jpg"))
    try:
        from tfface.verifier import FaceVerifier

        verifier = FaceVerifier(args.model, detector="tflite")
    except TFFaceError as err:
        print(f"tfface-demo: error: {err}", file=sys.stderr)
        return 2
    shown = os.path.relpath(verifier.model_path, ROOT)
    print(f"2. Verifying every pair with {shown} (threshold {verifier.threshold:.3f})")
    emb = dict(zip(photos, verifier.embed(photos)))
    right = 0
    pairs = list(itertools.combinations(photos, 2))
    for a, b in pairs:
        r = verifier.compare(emb[a], emb[b])
        truth = person_of(a) == person_of(b)
        right += r.same == truth
        verdict = "same person     " if r.same else "different people"
        mark = "correct" if r.same == truth else "WRONG"
        print(f"   {Path(a).name} vs {Path(b).name}: {verdict} similarity {r.similarity:+.3f}"
              f"  [{mark}]")
    print(f"   {right} of {len(pairs)} pairs decided correctly")
    return 0


if __name__ == "__main__":
    sys.exit(main())
