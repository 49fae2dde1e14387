"""Evaluate a face-embedding model on verification pairs (LFW, insightface .bin, CSV).

    python -m eval.verification --model m.keras --pairs lfw/pairs.txt --images lfw/images \\
        --out runs/lfw

Scores are cosine similarities of L2-normalised embeddings; accuracy follows the 10-fold
protocol (threshold chosen on the other 9 folds; LFW's own folds from pairs.txt). Photos are
detected and aligned once and cached (see :mod:`eval.align_cache`). Images whose face is not
found are not dropped: they get a centre crop, are counted in ``report.json`` and their pairs
are scored like the others.

Exit codes: 0 done (also when some faces were not found; the report counts them), 2 bad input.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from eval import embedders, metrics, pairs, plots
from eval.align_cache import (
    DETECTOR_CHOICES,
    center_crop,
    crop_cache,
    default_cache_dir,
    load_aligned,
)
from eval.report import build_report, summary_lines, write_report
from tfface.core.image import load_image
from tfface.errors import ImageError, TFFaceError

PROG = "tfface-eval"
FAILURE_HANDLING = ("no_face: centre crop of the photo; unreadable: grey crop; "
                    "the pairs are scored and kept in every denominator")


def _decode_bin_images(pair_set, size, progress):
    """Decoded (and if needed resized) crops of a .bin set; undecodable images become grey."""
    h, w = size
    crops = np.empty((len(pair_set.encoded), h, w, 3), np.uint8)
    statuses = []
    for i, data in enumerate(tqdm(pair_set.encoded, desc="decode", unit="img",
                                  disable=not progress, dynamic_ncols=True)):
        try:
            rgb = load_image(data)
        except ImageError:
            crops[i] = 128
            statuses.append("unreadable")
            continue
        crops[i] = rgb if rgb.shape[:2] == (h, w) else center_crop(rgb, size, 1.0)
        statuses.append("detected")
    return crops, statuses


def _load_aligned_folder(keys, size, progress):
    crops = np.empty((len(keys), *size, 3), np.uint8)
    statuses = []
    for i, k in enumerate(tqdm(keys, desc="load", unit="img", disable=not progress,
                               dynamic_ncols=True)):
        try:
            crops[i] = load_aligned(k, size)
            statuses.append("detected")
        except ImageError:
            crops[i] = 128
            statuses.append("unreadable")
    return crops, statuses


def get_crops(pair_set, size, args):
    """Model-input crops of every image of the set, their statuses and alignment info."""
    progress = not args.quiet
    if pair_set.kind == "bin":
        crops, statuses = _decode_bin_images(pair_set, size, progress)
        return crops, statuses, {"source": "pre-aligned images of the .bin"}
    if args.aligned:
        crops, statuses = _load_aligned_folder(pair_set.keys, size, progress)
        return crops, statuses, {"source": "pre-aligned image files (--aligned), resized"}
    cache_dir = None if args.no_cache else (args.cache or default_cache_dir())
    from tfface.model_card import card_template, read_card

    template = card_template(read_card(args.model))
    detector = getattr(args, "detector", "mtcnn")
    cache = crop_cache(cache_dir, size, args.policy, detector, template=template)
    crops, statuses, stats = cache.align_all(pair_set.keys, progress=progress)
    info = {"source": "MTCNN detection + ArcFace-template alignment", "detector": detector,
            "policy": args.policy,
            "crop_size": list(size), "cache_dir": cache_dir, **stats.to_dict()}
    info.pop("failures")
    return crops, statuses, info


def _worst(scores, issame, threshold, genuine, n):
    """Indices of the n worst mistakes: impostors scored highest (FP) or genuines lowest (FN)."""
    if genuine:
        idx = np.nonzero(issame & (scores < threshold))[0]
        return idx[np.argsort(scores[idx], kind="stable")][:n]
    idx = np.nonzero(~issame & (scores >= threshold))[0]
    return idx[np.argsort(-scores[idx], kind="stable")][:n]


def make_plots(out, ps, scores, emb, crops, m, args):
    """Write every plot that the data allow; returns {name: file or 'skipped: why'}."""
    done = {}
    fpr, tpr, _ = metrics.roc_curve(scores, ps.issame)
    fars = {float(k): v["tar"] for k, v in m["tar_at_far"].items()}
    title = f"{ps.name}: {Path(args.model).name}"
    t = m["best_threshold"]
    done["roc"] = plots.plot_roc(fpr, tpr, m["auc"], out / "roc.png", f"ROC - {title}", fars)
    done["similarity_histogram"] = plots.plot_similarity_histogram(
        scores, ps.issame, out / "similarity_hist.png", t, f"Cosine similarity - {title}")
    done["angle_histogram"] = plots.plot_angle_histogram(
        scores, ps.issame, out / "angle_hist.png", t, f"Angle - {title}")
    ids = ps.identities
    if crops is None:
        done["false_positives"] = done["false_negatives"] = "skipped: no images (embeddings given)"
    else:
        for name, genuine in (("false_negatives", True), ("false_positives", False)):
            sel = _worst(scores, ps.issame, t, genuine, args.grid_pairs)
            caps = None
            if ids is not None:
                caps = [f"{ids[ps.left[i]][:14]} / {ids[ps.right[i]][:14]}" for i in sel]
            kind = "genuine pairs scored lowest" if genuine else "impostor pairs scored highest"
            done[name] = plots.plot_pair_grid(
                crops[ps.left[sel]], crops[ps.right[sel]], scores[sel],
                out / f"{name}.png", f"{name.replace('_', ' ')}: {kind} "
                f"(threshold {t:.3f}, {len(sel)} shown)", caps)
    names = plots.select_identities(ids, 3, args.tsne_identities) if ids is not None else []
    if len(names) < 2:
        why = ("no identities known" if ids is None else "--tsne-identities 0"
               if args.tsne_identities == 0 else "fewer than 2 identities with 3+ images")
        done["tsne"] = done["identity_heatmap"] = f"skipped: {why}"
        return done
    rows = np.isin(np.asarray(ids), names)
    labels = np.asarray(ids)[rows]
    done["tsne"] = plots.plot_tsne(emb[rows], labels, out / "tsne.png",
                                   f"t-SNE, {len(names)} identities - {title}")
    done["identity_heatmap"] = plots.plot_identity_heatmap(
        emb[rows], labels, names, out / "identity_heatmap.png",
        f"Mean cosine similarity between identities - {ps.name}")
    return done


def save_embeddings(path, ps, emb, emb_flip, statuses):
    """Raw embeddings (before normalisation) in the format :func:`embedders.lookup_embeddings`
    reads: path, emb, emb_flip (with --flip), identity, status."""
    # "given": embeddings read from a file that recorded no alignment status.
    arrays = {"path": np.asarray(ps.keys), "emb": emb,
              "status": np.asarray(statuses if statuses is not None else ["given"] * len(emb))}
    if emb_flip is not None:
        arrays["emb_flip"] = emb_flip
    if ps.identities is not None:
        arrays["identity"] = np.asarray(ps.identities)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def evaluate(args):
    """Run one evaluation; returns the report dict."""
    timings = {}
    kind = embedders.model_kind(args.model)
    if args.images is not None and not os.path.isdir(args.images):
        raise TFFaceError(f"image folder not found: {args.images}")
    t0 = time.perf_counter()
    ps = pairs.load_pairs(args.pairs, args.images, args.name)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    crops, statuses, align_info = None, None, None
    if kind == "npz":
        emb, emb_flip, statuses = embedders.lookup_embeddings(
            args.model, ps.keys, args.images, args.flip, with_status=True)
        model_info = {"path": os.path.abspath(args.model), "kind": "npz",
                      "dim": int(emb.shape[1])}
    else:
        embedder = embedders.load_embedder(args.model, args.threads)
        model_info = embedder.describe()
        model_info["path"] = os.path.abspath(args.model)
        t1 = time.perf_counter()
        crops, statuses, align_info = get_crops(ps, embedder.input_size, args)
        timings["align"] = time.perf_counter() - t1
        t1 = time.perf_counter()
        emb, emb_flip = embedders.embed_faces(embedder, crops, args.batch_size, args.flip,
                                              progress=not args.quiet)
        timings["embed"] = time.perf_counter() - t1
        model_info["dim"] = int(emb.shape[1])
    final = embedders.combine(emb, emb_flip)
    scores = np.sum(final[ps.left] * final[ps.right], axis=1).astype(np.float64)
    m = metrics.verification_metrics(scores, ps.issame, args.n_folds, ps.folds)

    failed = [i for i, s in enumerate(statuses or []) if s not in ("detected", "given")]
    bad = np.zeros(len(ps.keys), bool)
    bad[failed] = True
    affected = bad[ps.left] | bad[ps.right]
    failures = {
        "handling": FAILURE_HANDLING,
        "n_images_failed": len(failed),
        "by_status": {s: int(sum(1 for x in (statuses or []) if x == s))
                      for s in ("no_face", "unreadable")},
        "n_pairs_affected": int(affected.sum()),
        "n_genuine_pairs_affected": int((affected & ps.issame).sum()),
        "images": [{"path": ps.keys[i], "status": statuses[i]} for i in failed],
    }
    plot_files = {}
    if not args.no_plots:
        t1 = time.perf_counter()
        plot_files = {k: (os.path.basename(v) if not v.startswith("skipped") else v)
                      for k, v in make_plots(out, ps, scores, final, crops, m, args).items()}
        timings["plots"] = time.perf_counter() - t1
    if args.save_embeddings:
        save_embeddings(args.save_embeddings, ps, emb, emb_flip, statuses)
    np.savez(out / "scores.npz", score=scores, issame=ps.issame, left=ps.left, right=ps.right)
    timings["total"] = time.perf_counter() - t0
    folds_src = "pairs file blocks" if ps.folds is not None else "consecutive blocks (KFold)"
    dataset = {"name": ps.name, "kind": ps.kind, "pairs": os.path.abspath(args.pairs),
               "images": os.path.abspath(args.images) if args.images else None,
               "n_pairs": ps.n_pairs, "n_images": len(ps.keys),
               "n_identities": len(set(ps.identities)) if ps.identities is not None else None}
    protocol = {"folds": folds_src, "n_folds": m["n_folds"], "flip": bool(args.flip),
                "score": "cosine similarity of L2-normalised embeddings; same if >= threshold",
                "threshold_search": "exact (midpoints of sorted scores), smallest on ties"}
    report = build_report(model_info, dataset, protocol, m, failures, align_info, timings,
                          plot_files, {"scores_file": "scores.npz",
                                       "embeddings_file": args.save_embeddings})
    write_report(out / "report.json", report)
    return report


def build_parser():
    p = argparse.ArgumentParser(
        prog=PROG, description="Evaluate a face-embedding model on verification pairs.")
    p.add_argument("--model", required=True,
                   help=".keras model, .tflite model, or .npz of precomputed embeddings")
    p.add_argument("--pairs", required=True,
                   help="LFW pairs.txt, CSV (path1,path2,same[,fold]) or insightface .bin")
    p.add_argument("--images", help="image folder (pairs.txt: <Name>/<Name>_NNNN.jpg; "
                                    "CSV: root of relative paths)")
    p.add_argument("--out", required=True, help="output folder for report.json and plots")
    p.add_argument("--name", help="data set name in the report (default: pairs file stem)")
    p.add_argument("--flip", action="store_true",
                   help="add the embedding of the mirrored face before normalising")
    p.add_argument("--policy", choices=("central", "largest"), default="central",
                   help="which face of a photo to use (default central: the subject of "
                        "benchmark photos is centred)")
    p.add_argument("--aligned", action="store_true",
                   help="images are already aligned crops: resize only, no detection")
    p.add_argument("--detector", choices=DETECTOR_CHOICES, default="mtcnn",
                   help="face detector for the photos: the mtcnn package or its TFLite port "
                   "(same landmarks, faster)")
    p.add_argument("--cache", help=f"aligned-crop cache folder (default {default_cache_dir()})")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=None, help="TFLite interpreter threads")
    p.add_argument("--n-folds", type=int, default=10,
                   help="folds when the pairs file does not define them (default 10)")
    p.add_argument("--save-embeddings", metavar="FILE.npz",
                   help="write raw embeddings (path, emb[, emb_flip], identity, status)")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--grid-pairs", type=int, default=16, help="pairs in each FP/FN grid")
    p.add_argument("--tsne-identities", type=int, default=20,
                   help="identities (with 3+ images) in the t-SNE and heatmap; 0 skips both")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if (args.batch_size < 1 or args.grid_pairs < 0 or args.n_folds < 2
            or args.tsne_identities < 0):
        print(f"{PROG}: error: --batch-size >= 1, --grid-pairs >= 0, --n-folds >= 2 and "
              "--tsne-identities >= 0 are required",
              file=sys.stderr)
        return 2
    try:
        report = evaluate(args)
    except (TFFaceError, OSError) as err:
        if args.debug:
            raise
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    for line in summary_lines(report):
        print(line)
    print(f"  report: {Path(args.out) / 'report.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
