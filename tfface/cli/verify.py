"""tfface-verify IMG1 IMG2: are these photos of the same person?

Exit status like cmp: 0 same person, 1 different people, 2 error (unreadable file, no face in
an image, bad model), with one line on stderr saying which.
"""

import argparse
import json
import time

from tfface.cli.common import add_model_options, report_error
from tfface.errors import NoFaceError

PROG = "tfface-verify"


def build_parser():
    p = argparse.ArgumentParser(prog=PROG, description="Compare the largest faces of two photos.")
    p.add_argument("image1")
    p.add_argument("image2")
    add_model_options(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        from tfface.verifier import FaceVerifier

        start = time.perf_counter()
        verifier = FaceVerifier(args.model, threshold=args.threshold, detector=args.detector,
                                num_threads=args.threads, min_score=args.min_score)
        loaded = time.perf_counter()
        embs = []
        for path in (args.image1, args.image2):
            try:
                embs.append(verifier.embed([path])[0])
            except NoFaceError as err:
                raise NoFaceError(f"no face found in {path}") from err
        result = verifier.compare(embs[0], embs[1])
        done = time.perf_counter()
    except Exception as err:  # noqa: BLE001 - one line, never a traceback (--debug shows it)
        return report_error(PROG, err, args.debug)
    if args.json:
        print(json.dumps({"image1": args.image1, "image2": args.image2, **result.to_dict(),
                          "model": str(verifier.model_path),
                          "seconds": {"load": round(loaded - start, 4),
                                      "verify": round(done - loaded, 4)}}, indent=2))
    else:
        verdict = "same person" if result.same else "different people"
        print(f"{verdict}: similarity {result.similarity:.4f} (threshold "
              f"{result.threshold:.4f}), distance {result.distance:.4f}")
    return 0 if result.same else 1


if __name__ == "__main__":
    raise SystemExit(main())
