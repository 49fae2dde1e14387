"""python -m training.dlib_template REFS.npz --out template.json

Derives the MTCNN-landmark template that reproduces dlib's 150x150 face chip.

dlib aligns with its own 5-point shape predictor (eye corners and the base of the nose) and
``get_face_chip(size=150, padding=0.25)``; the project detects with MTCNN (eye centres, nose
tip, mouth corners). For each image of a reference set written by
:mod:`training.dlib_reference` (which records dlib's image->chip transform), this maps MTCNN's
five landmarks through dlib's transform into chip pixels; the mean over the images is the
template (a similarity fit of a photo's MTCNN landmarks onto it then frames the face like
dlib's chip). Use training images (CelebA), never the evaluation set.

It also reports how far the resulting warps are from dlib's: the RMS distance, in chip pixels,
between where the template warp and dlib's transform put the chip's corners and centre.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from tfface.core.template import LANDMARK_NAMES, transform_points, umeyama_similarity
from tfface.errors import DataError, TFFaceError

PROG = "python -m training.dlib_template"
CHIP = 150


def _apply(matrix, points):
    return transform_points(matrix, points)


def mtcnn_landmarks(detector, path, dlib_shape5):
    """MTCNN (5, 2) landmarks of the face dlib aligned (nearest its 5 points), or None."""
    faces = detector.detect(path, policy="all")
    if not faces:
        return None
    centre = np.asarray(dlib_shape5).mean(axis=0)
    best = min(faces, key=lambda f: float(np.sum((f.landmarks.mean(axis=0) - centre) ** 2)))
    box = np.asarray(best.box, np.float64)
    # The chosen face must contain dlib's landmarks; otherwise dlib aligned another face.
    if not (box[0] <= centre[0] <= box[2] and box[1] <= centre[1] <= box[3]):
        return None
    return np.asarray(best.landmarks, np.float64)


def fit_template(mapped):
    """Template (5, 2) from MTCNN landmarks mapped into dlib chips, (N, 5, 2)."""
    mapped = np.asarray(mapped, np.float64)
    if mapped.ndim != 3 or mapped.shape[1:] != (5, 2) or len(mapped) < 1:
        raise DataError(f"need (N, 5, 2) mapped landmarks; got {mapped.shape}")
    return mapped.mean(axis=0)


def warp_error(template, landmarks, chip_from_image):
    """RMS distance (chip pixels) between the template warp and dlib's chip transform,
    measured at the chip's four corners and centre, per image. (N,) float64."""
    probe = np.array([[0, 0], [CHIP - 1, 0], [0, CHIP - 1], [CHIP - 1, CHIP - 1],
                      [(CHIP - 1) / 2, (CHIP - 1) / 2]], np.float64)
    errs = []
    for lm, dlib_m in zip(landmarks, chip_from_image):
        ours = umeyama_similarity(lm, template)
        # Image points that dlib's chip puts at the probes, then where our warp puts them.
        full = np.vstack([dlib_m, [0, 0, 1]])
        img_pts = _apply(np.linalg.inv(full)[:2], probe)
        errs.append(np.sqrt(np.mean(np.sum((_apply(ours, img_pts) - probe) ** 2, axis=1))))
    return np.asarray(errs)


def run(args):
    from tqdm import tqdm

    from tfface.detect import MTCNNDetector

    refs = np.load(args.refs)
    for key in ("path", "chip_from_image", "shape5"):
        if key not in refs:
            raise DataError(f"{args.refs}: missing {key!r}; write it with training.dlib_reference")
    n = len(refs["path"]) if not args.limit else min(args.limit, len(refs["path"]))
    detector = MTCNNDetector()
    lms, mats, mapped, used = [], [], [], []
    for i in tqdm(range(n), desc="MTCNN", file=sys.stderr):
        if "detected" in refs and args.detected_only and not refs["detected"][i]:
            continue
        lm = mtcnn_landmarks(detector, str(refs["path"][i]), refs["shape5"][i])
        if lm is None:
            continue
        lms.append(lm)
        mats.append(refs["chip_from_image"][i])
        mapped.append(_apply(refs["chip_from_image"][i], lm))
        used.append(str(refs["path"][i]))
    if len(mapped) < 10:
        raise DataError(f"only {len(mapped)} images had both a dlib and an MTCNN face")
    template = fit_template(mapped)
    spread = np.asarray(mapped).std(axis=0)
    err = warp_error(template, lms, mats)
    result = {
        "template_150": template.round(4).tolist(),
        "landmarks": list(LANDMARK_NAMES),
        "chip": {"size": CHIP, "padding": 0.25, "aligner": "dlib 5-point shape predictor"},
        "n_images": len(mapped),
        "source": str(args.refs),
        "landmark_std_px": spread.round(3).tolist(),
        "warp_rms_error_px": {"mean": float(err.mean()), "median": float(np.median(err)),
                              "p95": float(np.percentile(err, 95))},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=2)
        fh.write("\n")
    print(json.dumps(result, indent=2))
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[2])
    p.add_argument("refs", help=".npz from training/dlib_reference.py (training images)")
    p.add_argument("--out", required=True, help="output JSON with template_150")
    p.add_argument("--limit", type=int, default=0, help="use at most this many images")
    p.add_argument("--detected-only", action="store_true",
                   help="skip images where dlib's HOG detector found no face")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    args = p.parse_args(argv)
    try:
        return run(args)
    except TFFaceError as err:
        if args.debug:
            raise
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
