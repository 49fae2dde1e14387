"""`make demo`: the main job on the bundled sample photos.

Aligns every photo in samples/ with MTCNN and the ArcFace template and says where the crops
went. (When a default recognition model is shipped in saved_models/, the demo also verifies
the sample pairs with it.)
"""

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    p = argparse.ArgumentParser(prog="tfface-demo", description=__doc__.splitlines()[0])
    p.add_argument("--samples", default=str(ROOT / "samples"), help="folder of photos")
    p.add_argument("--out", default=str(ROOT / "out" / "demo"), help="output folder")
    args = p.parse_args(argv)

    from tfface.cli.align import main as align_main

    crops = os.path.join(args.out, "aligned")
    print(f"Aligning the photos in {args.samples} (MTCNN, 5 landmarks, ArcFace 112x112)...")
    rc = align_main([args.samples, crops])
    if rc != 0:
        return rc
    for path in sorted(Path(crops).rglob("*.png")):
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
