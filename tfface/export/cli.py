"""tfface-export MODEL.keras --out DIR: TFLite variants, model cards and a parity report.

For each variant (float32, float16, dynamic, int8) it writes ``NAME_VARIANT.tflite`` and its
card ``NAME_VARIANT.json``; ``parity_report.json`` compares every variant with the Keras model:
cosine similarity of embeddings on real aligned faces and, with ``--pairs``, verification
accuracy of both and the delta in percentage points. ``--calib-pairs`` sets each card's
threshold on pairs that are not the evaluation set.
"""

import argparse
import os
import time
from pathlib import Path

import numpy as np

from tfface.cli.common import report_error
from tfface.core.image import load_image
from tfface.core.preprocess import preprocessing_card
from tfface.core.template import face_template
from tfface.errors import DataError, TFFaceError
from tfface.export.convert import (
    INPUT_NAME,
    OUTPUT_NAME,
    SIGNATURE,
    VARIANTS,
    convert,
    keras_embeddings,
    load_keras_embedding_model,
    normalized_model,
)
from tfface.model_card import (
    CARD_FORMAT,
    card_template,
    read_card,
    sha256_file,
    write_json_atomic,
)

PROG = "tfface-export"
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def build_parser():
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("model", help="embedding model (.keras)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--name", default=None, help="file name stem (default: the model's stem)")
    p.add_argument("--variants", default="float32,float16,dynamic,int8",
                   help="comma-separated subset of " + ",".join(VARIANTS))
    p.add_argument("--representative", default=None,
                   help="folder of aligned crops (model input size) for int8 calibration and "
                   "the parity check")
    p.add_argument("--num-representative", type=int, default=300,
                   help="crops drawn (seeded) from --representative (default 300)")
    p.add_argument("--int8-input", choices=("int8", "uint8"), default="int8",
                   help="input type of the full-int8 model")
    p.add_argument("--pairs", default=None,
                   help="evaluation pairs (LFW pairs.txt, .csv or .bin) for the accuracy delta")
    p.add_argument("--images", default=None, help="image root of --pairs")
    p.add_argument("--calib-pairs", default=None,
                   help="pairs to calibrate the threshold on (not the evaluation set)")
    p.add_argument("--calib-images", default=None, help="image root of --calib-pairs")
    p.add_argument("--calib-aligned", action="store_true",
                   help="--calib-pairs images are already aligned crops (no detection)")
    p.add_argument("--policy", choices=("central", "largest"), default="central",
                   help="face chosen in pair photos")
    p.add_argument("--detector", choices=("mtcnn", "tflite"), default="mtcnn",
                   help="face detector for --pairs/--calib-pairs photos: the mtcnn package or "
                   "its TFLite port (same landmarks, faster)")
    p.add_argument("--cache", default=None,
                   help="aligned-crop cache folder (default: tfface-eval's, ~/.cache/tfface)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def list_crops(folder, size, limit, seed=0):
    """Up to ``limit`` aligned crops (uint8 (N, h, w, 3)) from a folder tree, seeded."""
    files = sorted(str(p) for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise DataError(f"no images under {folder}")
    rng = np.random.default_rng(seed)
    if len(files) > limit:
        files = [files[i] for i in sorted(rng.choice(len(files), limit, replace=False))]
    crops = []
    for f in files:
        try:
            img = load_image(f)
        except TFFaceError:
            continue
        if img.shape[:2] != tuple(size):
            raise DataError(f"{f}: crops must be {size[0]}x{size[1]} (aligned at the model's "
                            f"input size); got {img.shape[1]}x{img.shape[0]}")
        crops.append(img)
    if not crops:
        raise DataError(f"no readable crops under {folder}")
    return np.stack(crops)


def pair_scores(emb, ps):
    return np.sum(emb[ps.left] * emb[ps.right], axis=1)


def load_pair_crops(pairs, images, size, policy, aligned=False, cache_dir=None, template=None,
                    detector="mtcnn"):
    """(PairSet, crops) with the eval module's aligner and crop cache."""
    from eval.align_cache import crop_cache, default_cache_dir
    from eval.pairs import load_pairs

    ps = load_pairs(pairs, images)
    if aligned:
        from eval.verification import _load_aligned_folder

        crops, _ = _load_aligned_folder(ps.keys, size, True)
        return ps, crops, {"source": "pre-aligned crops"}
    if ps.kind == "bin":
        from eval.verification import _decode_bin_images

        crops, _ = _decode_bin_images(ps, size, True)
        return ps, crops, {}
    cache = crop_cache(cache_dir or default_cache_dir(), size, policy, detector,
                       template=template)
    crops, _statuses, stats = cache.align_all(ps.keys)
    info = stats.to_dict()
    info.pop("failures", None)
    return ps, crops, info


def verification(emb, ps):
    from eval.metrics import verification_metrics

    m = verification_metrics(pair_scores(emb, ps), ps.issame, folds=ps.folds)
    return {"accuracy_mean": m["accuracy_mean"], "accuracy_std": m["accuracy_std"],
            "auc": m["auc"], "eer": m["eer"], "best_threshold": m["best_threshold"],
            "tar_at_far_1e-3": m["tar_at_far"]["0.001"]["tar"]}


def calibrate(emb, ps):
    from eval.metrics import best_threshold

    thr, acc = best_threshold(pair_scores(emb, ps), ps.issame)
    return {"cosine": thr, "accuracy": acc, "pairs": int(ps.n_pairs), "calibrated_on": ps.name}


def make_card(model_path, source_card, variant, tfl_path, embedder, size, threshold, parity,
              int8_input):
    details = embedder.model.input_details[embedder.input_name]
    scale, zero = details.get("quantization", (0.0, 0))
    card = {
        "format": CARD_FORMAT,
        "model_id": f"{Path(tfl_path).stem}-{sha256_file(tfl_path)[:12]}",
        "file": Path(tfl_path).name,
        "variant": variant,
        "file_size_bytes": os.path.getsize(tfl_path),
        "sha256": sha256_file(tfl_path),
        "source_model": {"file": Path(model_path).name, "sha256": sha256_file(model_path),
                         "backbone": source_card.get("backbone"),
                         "program": source_card.get("program")},
        "signature": SIGNATURE,
        "input": {
            "name": INPUT_NAME, "shape": [-1, size[0], size[1], 3],
            "dtype": np.dtype(details["dtype"]).name, "color_order": "RGB",
            "layout": "NHWC",
            "preprocessing": preprocessing_card(),
            "quantization": ({"scale": float(scale), "zero_point": int(zero),
                              "formula": "q = round(((x - 127.5) / 128) / scale) + zero_point"}
                             if variant == "int8" else None),
        },
        "output": {"name": OUTPUT_NAME, "dtype": "float32",
                   "embedding_size": int(embedder(np.zeros((1, *size, 3), np.uint8)).shape[-1]),
                   "l2_normalized": True},
        "input_size": list(size),
        "alignment": {"template": "arcface", "size": list(size),
                      "landmarks": face_template(size).round(4).tolist()},
        "similarity": "cosine",
        "threshold": threshold,
        "parity": parity,
        "int8_input": int8_input if variant == "int8" else None,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if source_card.get("alignment", {}).get("template") is not None:
        card["alignment"] = source_card["alignment"]
    training = {k: source_card[k] for k in ("program", "command_line", "data", "steps", "epochs",
                                           "train_seconds", "final_metrics", "config",
                                           "initialized_from", "total_train_seconds")
                if k in source_card}
    if training:
        card["training"] = training
    return card


def run(args):
    from tflite.embedder import TFLiteEmbedder

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        raise TFFaceError(f"unknown variant(s) {bad}; choose from {list(VARIANTS)}")
    model = load_keras_embedding_model(args.model)
    if "int8" in variants and not args.representative:
        raise TFFaceError("the int8 variant needs --representative DIR of aligned crops")
    source_card = read_card(args.model)
    norm = normalized_model(model)
    size = (int(model.input_shape[1]), int(model.input_shape[2]))
    name = args.name or Path(args.model).stem
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    crops = (list_crops(args.representative, size, args.num_representative)
             if args.representative else None)
    ref_emb = keras_embeddings(norm, crops) if crops is not None else None
    eval_set = calib_set = None
    report = {"model": str(args.model), "input_size": list(size), "variants": {}}
    if args.pairs:
        ps, pcrops, info = load_pair_crops(args.pairs, args.images, size, args.policy,
                                           cache_dir=args.cache, detector=args.detector,
                                           template=card_template(source_card))
        eval_set = (ps, pcrops)
        k_emb = keras_embeddings(norm, pcrops)
        report["pairs"] = {"file": args.pairs, "name": ps.name, "n_pairs": ps.n_pairs,
                           "alignment": {"detector": args.detector, **info}}
        report["keras"] = verification(k_emb, ps)
    if args.calib_pairs:
        cps, ccrops, _ = load_pair_crops(args.calib_pairs, args.calib_images, size, args.policy,
                                         aligned=args.calib_aligned, cache_dir=args.cache,
                                         detector=args.detector,
                                         template=card_template(source_card))
        calib_set = (cps, ccrops)
        report["keras_calibration"] = calibrate(keras_embeddings(norm, ccrops), cps)

    for variant in variants:
        t0 = time.perf_counter()
        flat = convert(norm, variant, representative=crops, int8_input=args.int8_input)
        tfl_path = out / f"{name}_{variant}.tflite"
        tmp = tfl_path.with_name(tfl_path.name + f".part-{os.getpid()}")
        tmp.write_bytes(flat)
        os.replace(tmp, tfl_path)
        embedder = TFLiteEmbedder(tfl_path)
        entry = {"file": tfl_path.name, "size_bytes": len(flat),
                 "convert_seconds": round(time.perf_counter() - t0, 2)}
        if crops is not None:
            cos = np.sum(embedder(crops) * ref_emb, axis=1)
            entry["cosine_to_keras"] = {"mean": float(cos.mean()), "min": float(cos.min()),
                                        "n_faces": len(cos)}
        if eval_set is not None:
            ps, pcrops = eval_set
            entry["verification"] = verification(embedder(pcrops), ps)
            entry["accuracy_delta_pp"] = 100.0 * (entry["verification"]["accuracy_mean"]
                                                  - report["keras"]["accuracy_mean"])
        threshold = None
        if calib_set is not None:
            threshold = calibrate(embedder(calib_set[1]), calib_set[0])
            entry["threshold"] = threshold
        card = make_card(args.model, source_card, variant, tfl_path, embedder, size, threshold,
                         {k: entry[k] for k in ("cosine_to_keras", "verification",
                                                "accuracy_delta_pp") if k in entry},
                         args.int8_input)
        write_json_atomic(tfl_path.with_suffix(".json"), card)
        report["variants"][variant] = entry
        msg = f"{PROG}: {tfl_path} ({len(flat) / 1e6:.2f} MB)"
        if "cosine_to_keras" in entry:
            msg += f", cosine to Keras mean {entry['cosine_to_keras']['mean']:.5f} min " \
                   f"{entry['cosine_to_keras']['min']:.5f}"
        if "accuracy_delta_pp" in entry:
            msg += f", accuracy {100 * entry['verification']['accuracy_mean']:.2f}% " \
                   f"({entry['accuracy_delta_pp']:+.2f} pp)"
        print(msg)
    write_json_atomic(out / "parity_report.json", report)
    print(f"{PROG}: parity report in {out / 'parity_report.json'}")
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except Exception as err:  # noqa: BLE001 - one line, never a traceback (--debug shows it)
        return report_error(PROG, err, args.debug)


if __name__ == "__main__":
    raise SystemExit(main())
