"""Reference outputs of dlib itself, for checking the imported model (run with dlib installed).

For each image: dlib's HOG detector (one upsampling; the detection nearest the image centre),
the 5-point shape predictor, ``dlib.get_face_chip(img, shape, size=150, padding=0.25)``, and
``compute_face_descriptor`` of the chip -- the procedure of ``/work/shared/data/teacher``. It
writes an ``.npz`` with ``path`` (str), ``descriptor`` float32 (N, 128), ``chip_from_image``
float64 (N, 2, 3) (dlib's ``get_mapping_to_chip``: image pixel -> 150x150 chip pixel),
``shape5`` float64 (N, 5, 2) and ``detected`` uint8 (N,), and optionally the chips as PNG.

With ``--fixtures DIR`` it writes test fixtures instead: each chip as a small JPEG and
``references.json`` with dlib's descriptor of the *decoded* JPEG pixels (so the reference is
exact for what a test reads) and the SHA-256 of those pixels.

This script imports only dlib, numpy and Pillow, so it runs in a separate environment:
``python -m venv /tmp/dlib-venv && /tmp/dlib-venv/bin/pip install dlib==20.0.1
face_recognition_models numpy pillow`` then
``/tmp/dlib-venv/bin/python training/dlib_reference.py IMAGES... --out refs.npz``.
"""

import argparse
import math
import sys
from pathlib import Path

import numpy as np

CHIP_SIZE = 150
CHIP_PADDING = 0.25


def mapping_to_chip(details):
    """dlib's ``get_mapping_to_chip``: a (2, 3) affine, image (x, y) -> chip (x, y)."""
    r = details.rect
    cx, cy = (r.left() + r.right()) / 2.0, (r.top() + r.bottom()) / 2.0
    c, s = math.cos(details.angle), math.sin(details.angle)

    def rot(x, y):
        dx, dy = x - cx, y - cy
        return (c * dx - s * dy + cx, s * dx + c * dy + cy)

    src = np.array([rot(r.left(), r.top()), rot(r.right(), r.top()),
                    rot(r.right(), r.bottom())], dtype=np.float64)
    dst = np.array([[0, 0], [details.cols - 1, 0], [details.cols - 1, details.rows - 1]],
                   dtype=np.float64)
    a = np.hstack([src, np.ones((3, 1))])
    return np.linalg.solve(a, dst).T


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("images", nargs="+", help="image files, or folders searched for *.jpg/*.png")
    p.add_argument("--out", required=True, help="output .npz")
    p.add_argument("--chips", default=None, help="folder for the 150x150 chips as PNG")
    p.add_argument("--fixtures", default=None,
                   help="folder for JPEG chips + references.json (test fixtures)")
    p.add_argument("--source-root", default=None,
                   help="record fixture sources relative to this folder")
    p.add_argument("--limit", type=int, default=0, help="at most this many images (0: all)")
    p.add_argument("--models", default=None,
                   help="folder with the .dat files (default: face_recognition_models)")
    args = p.parse_args(argv)

    import dlib
    from PIL import Image

    if args.models:
        models = Path(args.models)
    else:
        import face_recognition_models

        models = Path(face_recognition_models.face_recognition_model_location()).parent
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    encoder = dlib.face_recognition_model_v1(
        str(models / "dlib_face_recognition_resnet_model_v1.dat"))

    files = []
    for item in args.images:
        path = Path(item)
        if path.is_dir():
            files += sorted(q for q in path.rglob("*") if q.suffix.lower() in (".jpg", ".png"))
        else:
            files.append(path)
    if args.limit:
        files = files[:args.limit]
    if args.chips:
        Path(args.chips).mkdir(parents=True, exist_ok=True)

    fixtures = []
    rows = {"path": [], "descriptor": [], "chip_from_image": [], "shape5": [], "detected": []}
    for i, path in enumerate(files):
        img = np.asarray(Image.open(path).convert("RGB"))
        h, w = img.shape[:2]
        dets = detector(img, 1)
        if len(dets):
            det = min(dets, key=lambda d: (d.center().x - w / 2) ** 2 + (d.center().y - h / 2) ** 2)
        else:
            det = dlib.rectangle(int(w * 0.25), int(h * 0.25), int(w * 0.75), int(h * 0.75))
        shape = predictor(img, det)
        chip = dlib.get_face_chip(img, shape, size=CHIP_SIZE, padding=CHIP_PADDING)
        details = dlib.get_face_chip_details(shape, size=CHIP_SIZE, padding=CHIP_PADDING)
        rows["path"].append(str(path))
        rows["descriptor"].append(np.asarray(encoder.compute_face_descriptor(chip), np.float32))
        rows["chip_from_image"].append(mapping_to_chip(details))
        rows["shape5"].append([(shape.part(k).x, shape.part(k).y) for k in range(5)])
        rows["detected"].append(1 if len(dets) else 0)
        if args.chips:
            Image.fromarray(chip).save(Path(args.chips) / f"{i:05d}_{path.parent.name}_"
                                                          f"{path.stem}.png")
        if args.fixtures:
            fixtures.append(_fixture(args, path, chip, encoder, rows))
        if (i + 1) % 100 == 0:
            print(f"{i + 1}/{len(files)}", file=sys.stderr)
    np.savez(args.out, path=np.array(rows["path"]),
             descriptor=np.stack(rows["descriptor"]),
             chip_from_image=np.stack(rows["chip_from_image"]),
             shape5=np.asarray(rows["shape5"], dtype=np.float64),
             detected=np.asarray(rows["detected"], dtype=np.uint8))
    print(f"wrote {args.out}: {len(files)} images", file=sys.stderr)
    if args.fixtures:
        import json

        with open(Path(args.fixtures) / "references.json", "w", encoding="utf-8") as fh:
            json.dump({"dlib_version": dlib.__version__, "chip_size": CHIP_SIZE,
                       "chip_padding": CHIP_PADDING, "chips": fixtures}, fh, indent=1)
            fh.write("\n")
    return 0


def _fixture(args, path, chip, encoder, rows):
    """A JPEG chip in args.fixtures and its reference entry (dlib on the decoded pixels)."""
    import hashlib
    import io

    from PIL import Image

    Path(args.fixtures).mkdir(parents=True, exist_ok=True)
    name = f"{path.parent.name}_{path.stem}.jpg"
    buf = io.BytesIO()
    Image.fromarray(chip).save(buf, format="JPEG", quality=95)
    (Path(args.fixtures) / name).write_bytes(buf.getvalue())
    decoded = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    source = Path(path).resolve()
    if args.source_root:
        source = source.relative_to(Path(args.source_root).resolve())
    return {"chip": name, "source": str(source),
            "pixels_sha256": hashlib.sha256(np.ascontiguousarray(decoded).tobytes()).hexdigest(),
            "descriptor": [round(float(v), 8) for v in encoder.compute_face_descriptor(decoded)],
            "descriptor_of_lossless_chip": [round(float(v), 8) for v in rows["descriptor"][-1]],
            "dlib_detected": int(rows["detected"][-1])}


if __name__ == "__main__":
    raise SystemExit(main())
