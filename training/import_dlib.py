"""python -m training.import_dlib [--dat FILE] --out saved_models/dlib_resnet

Imports dlib's public-domain face-recognition network (``dlib_face_recognition_resnet_model_v1``
from the ``face_recognition_models`` package, the model behind the face_recognition library)
into Keras 3 and TFLite, so that it runs without dlib:

1. parse the ``.dat`` file (:mod:`training.dlib_format`, no dlib needed);
2. build :class:`training.models.dlib_resnet.DlibResNet` and load the weights, with dlib's
   affine layers and input normalisation folded into the convolutions;
3. check the descriptors against dlib's own on committed face chips (``--references``);
4. write ``dlib_resnet.keras`` and its model card (``dlib_resnet.json``);
5. convert to TFLite with ``tfface-export`` (float32, float16, dynamic-range and full int8;
   builtin ops only) and add each variant's agreement with dlib to its card;
6. write ``SHA256SUMS``.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from tfface.core.image import load_image
from tfface.core.preprocess import normalize_face, preprocessing_card
from tfface.errors import DataError, ModelError, TFFaceError
from tfface.model_card import CARD_FORMAT, read_card, sha256_file, write_json_atomic

PROG = "python -m training.import_dlib"
DAT_NAME = "dlib_face_recognition_resnet_model_v1.dat"
REFERENCES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "dlib"
NAME = "dlib_resnet"
LICENSE = ("Public domain / CC0 1.0 Universal (Davis King's dlib-models; the "
           "face_recognition_models package's LICENSE is CC0 1.0)")

# Where MTCNN's 5 landmarks (left eye, right eye, nose tip, mouth left, mouth right) fall in
# dlib's 150x150 chip (5-point shape predictor, get_face_chip padding 0.25): the mean over
# CelebA training images of MTCNN landmarks mapped through dlib's own image->chip transform.
# Derived from 249 CelebA images (dlib 20.0.1): ``training/dlib_reference.py`` then
# ``python -m training.dlib_template``; per-point spread 2.5-8 px, see the model card.
DLIB_CHIP_TEMPLATE_150 = (
    (47.1714, 44.3773),
    (99.8076, 43.8188),
    (72.4179, 76.8287),
    (49.5264, 101.2642),
    (97.3547, 100.6746),
)
# How far the template warp is from dlib's own chip on those images: RMS distance (chip
# pixels) at the chip's corners and centre.
TEMPLATE_FIT_RMS_PX = {"mean": 7.58, "median": 5.88, "p95": 19.84}


def find_dat(path=None):
    """The .dat file: ``path``, else the installed face_recognition_models package's."""
    if path:
        if not os.path.isfile(path):
            raise ModelError(f"dlib model file not found: {path}")
        return Path(path)
    try:
        import face_recognition_models
    except ImportError as err:
        raise ModelError(
            f"no --dat given and the face_recognition_models package is not installed; "
            f"pip install face_recognition_models, or download {DAT_NAME}.bz2 from "
            f"dlib.net/files and pass --dat") from err
    dat = Path(face_recognition_models.face_recognition_model_location())
    if not dat.is_file():
        raise ModelError(f"face_recognition_models is installed but {dat} is missing")
    return dat


def build_model(dat):
    """(DlibResNet with dlib's weights, parsed network dict) from a .dat file."""
    from training.dlib_format import read_dlib_resnet
    from training.dlib_weights import load_into
    from training.models.dlib_resnet import DlibResNet

    net = read_dlib_resnet(dat)
    rows, cols = net["input"]["size"]
    model = DlibResNet(input_shape=(rows, cols, 3))
    return load_into(model, net), net


def load_references(folder):
    """Committed dlib references: (names, uint8 chips (N, 150, 150, 3), float32 (N, 128)).

    ``folder/references.json`` lists ``{"chip": file, "descriptor": [128 floats]}`` entries,
    each descriptor from dlib's ``compute_face_descriptor`` of that chip.
    """
    index = Path(folder) / "references.json"
    if not index.is_file():
        raise DataError(f"no dlib references at {index}")
    with open(index, encoding="utf-8") as fh:
        entries = json.load(fh)["chips"]
    names = [e["chip"] for e in entries]
    chips = np.stack([load_image(Path(folder) / n) for n in names])
    desc = np.asarray([e["descriptor"] for e in entries], dtype=np.float32)
    return names, chips, desc


def compare(ours, dlib_desc):
    """Agreement of descriptors with dlib's: max |difference| and cosine (raw vectors), and
    max |difference| after L2 normalisation of both."""
    ours = np.asarray(ours, np.float64)
    ref = np.asarray(dlib_desc, np.float64)
    cos = np.sum(ours * ref, 1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(ref, axis=1))
    unit = ours / np.linalg.norm(ours, axis=1, keepdims=True)
    unit_ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    out = {"n_chips": len(ref), "cosine_min": float(cos.min()),
           "cosine_mean": float(cos.mean()),
           "max_abs_diff_unit": float(np.abs(unit - unit_ref).max())}
    if np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-4):
        return out  # an L2-normalised model output: only the unit comparison is meaningful
    out["max_abs_diff"] = float(np.abs(ours - ref).max())
    out["max_euclidean"] = float(np.linalg.norm(ours - ref, axis=1).max())
    return out


def teacher_threshold(path, seed=0):
    """Cosine threshold of best accuracy on pairs of dlib's own descriptors of a labelled
    training set (``teacher/celeba.npz``: ``path`` <set>/<identity>/<file>, ``emb``): every
    same-identity pair and as many random different-identity pairs. The imported model
    reproduces these descriptors (see the parity numbers), so no inference is needed."""
    from eval.metrics import best_threshold

    try:
        data = np.load(path)
        emb, paths = np.asarray(data["emb"], np.float64), [str(p) for p in data["path"]]
    except (OSError, KeyError, ValueError) as err:
        raise DataError(f"cannot read teacher descriptors {path}: {err}") from err
    ids = np.array([Path(p).parent.name for p in paths])
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    left, right = [], []
    for ident in np.unique(ids):
        idx = np.flatnonzero(ids == ident)
        a, b = np.triu_indices(len(idx), 1)
        left.append(idx[a])
        right.append(idx[b])
    left, right = np.concatenate(left), np.concatenate(right)
    rng = np.random.default_rng(seed)
    n = len(left)
    dl, dr = rng.integers(0, len(ids), 3 * n), rng.integers(0, len(ids), 3 * n)
    keep = ids[dl] != ids[dr]
    dl, dr = dl[keep][:n], dr[keep][:n]
    scores = np.concatenate([np.sum(unit[left] * unit[right], 1),
                             np.sum(unit[dl] * unit[dr], 1)])
    issame = np.concatenate([np.ones(n, bool), np.zeros(len(dl), bool)])
    thr, acc = best_threshold(scores, issame)
    return {"cosine": round(thr, 6), "accuracy": acc, "pairs": len(scores),
            "calibrated_on": f"dlib descriptors of {Path(path).name} (training identities)"}


def keras_card(model, net, dat, template, parity):
    return {
        "format": CARD_FORMAT,
        "model_id": f"{NAME}-{sha256_file(dat)[:12]}",
        "backbone": NAME,
        "model": "dlib_face_recognition_resnet_model_v1 (dlib face_recognition_model_v1, "
                 "ResNet with 29 conv layers, metric loss), imported into Keras 3",
        "source": {"file": Path(dat).name, "sha256": sha256_file(dat),
                   "package": "face_recognition_models 0.3.0 (PyPI)",
                   "architecture": "anet_type in dlib tools/python/src/face_recognition.cpp",
                   "published_lfw_accuracy": 0.9938,
                   "loss": {"type": "loss_metric", **net["loss"]}},
        "license": LICENSE,
        "command": f"{PROG} --out <dir>",
        "input": {"name": "image", "shape": [-1, *model.input_shape[1:]], "dtype": "float32",
                  "color_order": "RGB", "layout": "NHWC",
                  "preprocessing": preprocessing_card(),
                  "dlib_preprocessing": {
                      "formula": "(x - mean_rgb) / 256 on 0..255 RGB",
                      "mean_rgb": [round(float(v), 4) for v in net["input"]["mean_rgb"]],
                      "note": "folded into the first convolution; feed (x - 127.5) / 128"}},
        "output": {"name": "embedding", "dtype": "float32", "embedding_size": 128,
                   "l2_normalized": False,
                   "dlib_distance": "Euclidean distance of raw descriptors, same person "
                                    "below 0.6"},
        "input_size": list(model.input_shape[1:3]),
        "alignment": ({"template": np.asarray(template).round(4).tolist(),
                       "size": list(model.input_shape[1:3]),
                       "source": "mean of MTCNN's landmarks mapped through dlib's own "
                                 "image-to-chip transform (5-point shape predictor, "
                                 "get_face_chip size 150, padding 0.25) on 249 CelebA "
                                 "training images (training.dlib_template)",
                       "fit_rms_error_px": TEMPLATE_FIT_RMS_PX}
                      if template is not None else {"template": None}),
        "similarity": "cosine",
        "parity": {"dlib": parity} if parity else {},
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def build_parser():
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[2])
    p.add_argument("--dat", default=None,
                   help=f"{DAT_NAME} (default: from the installed face_recognition_models)")
    p.add_argument("--out", required=True, help="output folder, e.g. saved_models/dlib_resnet")
    p.add_argument("--references", default=str(REFERENCES),
                   help="folder of dlib chips and references.json (default: the committed "
                        "tests/fixtures/dlib); 'none' to skip the dlib parity check")
    p.add_argument("--variants", default="float32,float16",
                   help="TFLite variants, comma-separated subset of float32,float16,dynamic,"
                        "int8; 'none' for the .keras only")
    p.add_argument("--representative", default=None,
                   help="folder of 150x150 dlib-aligned chips for int8 calibration")
    p.add_argument("--template", default=None,
                   help="JSON file with a 5x2 'template_150' (from training.dlib_template) "
                        "to put in the cards instead of the built-in one")
    p.add_argument("--calib-teacher", default=None,
                   help="teacher .npz of dlib descriptors with identity folders (e.g. "
                        "../shared/data/teacher/celeba.npz) to set the cards' cosine threshold")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _update_tflite_cards(out, variants, refs, threshold):
    """Adds dlib parity, the licence and the threshold to each TFLite variant's card."""
    from tflite.embedder import TFLiteEmbedder

    results = {}
    for variant in variants:
        path = out / f"{NAME}_{variant}.tflite"
        card = read_card(path)
        if refs is not None:
            results[variant] = compare(TFLiteEmbedder(path)(refs[0]), refs[1])
            card.setdefault("parity", {})["dlib"] = results[variant]
        if threshold is not None:
            card["threshold"] = threshold
        card["license"] = LICENSE
        card["source"] = {"model": "dlib_face_recognition_resnet_model_v1",
                          "package": "face_recognition_models 0.3.0 (PyPI)"}
        write_json_atomic(path.with_suffix(".json"), card)
    return results


def run(args):
    from tfface.quiet import import_tensorflow

    import_tensorflow()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dat = find_dat(args.dat)
    t0 = time.perf_counter()
    model, net = build_model(dat)
    print(f"{PROG}: parsed {dat} and built {NAME} in {time.perf_counter() - t0:.1f} s",
          file=sys.stderr)

    template = DLIB_CHIP_TEMPLATE_150
    if args.template:
        with open(args.template, encoding="utf-8") as fh:
            template = np.asarray(json.load(fh)["template_150"], np.float64)
        if template.shape != (5, 2):
            raise DataError(f"{args.template}: template_150 must be 5x2; got {template.shape}")

    threshold = teacher_threshold(args.calib_teacher) if args.calib_teacher else None
    refs = None
    parity = {}
    if args.references.lower() != "none":
        names, chips, ref = load_references(args.references)
        refs = (chips, ref)
        ours = model.predict(normalize_face(chips), batch_size=8, verbose=0)
        parity["keras_float32"] = compare(ours, ref)
        print(f"{PROG}: Keras vs dlib on {len(names)} chips: {parity['keras_float32']}",
              file=sys.stderr)

    keras_path = out / f"{NAME}.keras"
    model.save(keras_path)
    card = keras_card(model, net, dat, template, parity)
    if threshold is not None:
        card["threshold"] = threshold
    write_json_atomic(keras_path.with_suffix(".json"), card)
    print(f"{PROG}: wrote {keras_path} ({keras_path.stat().st_size / 1e6:.1f} MB)")
    # tfface-export reloads the .keras; a second live copy of the same variables in this
    # process makes the TFLite converter keep them as resource variables instead of
    # freezing them into the file, so drop ours first.
    del model
    import keras

    keras.backend.clear_session()

    variants = [] if args.variants.lower() == "none" else [
        v.strip() for v in args.variants.split(",") if v.strip()]
    if variants:
        from tfface.export.cli import main as export_main

        argv = [str(keras_path), "--out", str(out), "--name", NAME,
                "--variants", ",".join(variants)]
        if args.representative:
            argv += ["--representative", args.representative]
        if export_main(argv) != 0:
            raise ModelError("TFLite export failed (see the message above)")
        for variant, res in _update_tflite_cards(out, variants, refs, threshold).items():
            parity[f"tflite_{variant}"] = res
            print(f"{PROG}: TFLite {variant} vs dlib: {res}", file=sys.stderr)
        card["parity"] = {"dlib": parity}
        write_json_atomic(keras_path.with_suffix(".json"), card)

    files = sorted(p for p in out.iterdir() if p.suffix in (".keras", ".tflite", ".json"))
    with open(out / "SHA256SUMS", "w", encoding="utf-8") as fh:
        fh.writelines(f"{sha256_file(p)}  {p.name}\n" for p in files)
    print(f"{PROG}: wrote {len(files)} files and SHA256SUMS in {out}")
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except TFFaceError as err:
        if args.debug:
            raise
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
