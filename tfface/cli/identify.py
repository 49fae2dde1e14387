"""tfface-identify --db bank.db IMAGE...: who is in these photos?

For every face: the best facebank match and its similarity, or "unknown" below the threshold
(the model card's unless --threshold). --annotate DIR writes copies with boxes and names.
"""

import argparse
import json
import os
import sys

import cv2
import numpy as np

from tfface.cli.common import add_model_options, make_verifier, report_error
from tfface.errors import TFFaceError

PROG = "tfface-identify"


def build_parser():
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--db", required=True, help="facebank file made by tfface-enroll")
    p.add_argument("images", nargs="+", help="photos")
    p.add_argument("--json", action="store_true", help="print results as JSON")
    p.add_argument("--annotate", metavar="DIR", help="write annotated copies of the photos here")
    add_model_options(p)
    return p


def draw(rgb, faces_matches):
    """BGR copy of the photo with a box and 'name similarity' per face."""
    img = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    for face, match in faces_matches:
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        color = (0, 200, 0) if match.known else (0, 0, 230)
        cv2.rectangle(img, (x1, y1), (x2, y2), color, 2)
        label = f"{match.name} {match.similarity:.2f}"
        cv2.putText(img, label, (x1, max(12, y1 - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1,
                    cv2.LINE_AA)
    return img


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        from tfface.core.image import load_image
        from tfface.facebank import Facebank

        if not os.path.isfile(args.db):
            raise TFFaceError(f"facebank not found: {args.db}")
        verifier = make_verifier(args)
        bank = Facebank(args.db, model_id=verifier.model_id)
        if len(bank) == 0:
            raise TFFaceError(f"facebank {args.db} is empty; enroll people first")
    except Exception as err:  # noqa: BLE001
        return report_error(PROG, err, args.debug)
    results, n_failed = [], 0
    for path in args.images:
        entry = {"image": path, "faces": []}
        try:
            rgb = load_image(path)
            found = verifier.embed_faces(rgb)
            matches = bank.search(np.stack([e for _, e in found]), verifier.threshold) \
                if found else []
            for (face, _), m in zip(found, matches):
                entry["faces"].append({"box": [round(float(v), 1) for v in face.box],
                                       "score": round(face.score, 4), **m.to_dict()})
            if args.annotate:
                os.makedirs(args.annotate, exist_ok=True)
                out = os.path.join(args.annotate, os.path.splitext(os.path.basename(path))[0]
                                   + "_identified.jpg")
                cv2.imwrite(out, draw(rgb, list(zip([f for f, _ in found], matches))))
                entry["annotated"] = out
        except TFFaceError as err:
            entry["error"] = str(err)
            n_failed += 1
        results.append(entry)
    if args.json:
        print(json.dumps({"threshold": verifier.threshold, "results": results}, indent=2))
    else:
        for entry in results:
            if "error" in entry:
                print(f"{entry['image']}: error: {entry['error']}")
            elif not entry["faces"]:
                print(f"{entry['image']}: no face found")
            for f in entry["faces"]:
                print(f"{entry['image']}: {f['name']} (similarity {f['similarity']:.3f}, "
                      f"box {f['box']})")
    if n_failed:
        print(f"{PROG}: {n_failed} image(s) could not be read", file=sys.stderr)
    return 2 if n_failed == len(args.images) else 0


if __name__ == "__main__":
    raise SystemExit(main())
