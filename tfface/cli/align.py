"""tfface-align SRC DST: mirror a photo tree into aligned face crops.

Resumable: every crop is written atomically (temp file + rename) and existing crops are
skipped, so a killed run started again ends with the same files and no partial ones. Bad files
never stop the run; they are listed in DST/failures.csv.
"""

import argparse
import csv
import io
import multiprocessing as mp
import os
import sys
import time

from tqdm import tqdm

from tfface.cli.common import report_error
from tfface.core.detection import POLICIES
from tfface.errors import TFFaceError

PROG = "tfface-align"
FORMATS = ("png", "jpg", "webp")

_STATE = {}


def build_parser():
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Detect and align faces in every file under SRC (folder per identity or "
        "flat) and write the crops to the same relative paths under DST.")
    p.add_argument("src", help="source folder of photos")
    p.add_argument("dst", help="output folder (created; existing crops are kept and skipped)")
    p.add_argument("--size", type=int, default=112, help="crop size in pixels (112 ArcFace, "
                   "160 FaceNet); default 112")
    p.add_argument("--policy", choices=POLICIES, default="largest",
                   help="which faces: largest, central or all (all writes NAME_0, NAME_1, ...)")
    p.add_argument("--min-score", type=float, default=0.9, help="minimum detector score")
    p.add_argument("--min-face-size", type=int, default=20, help="minimum face size in pixels")
    p.add_argument("--max-side", type=int, default=1280,
                   help="downscale larger images to this longest side for detection")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--format", choices=FORMATS, default="png", help="output format")
    p.add_argument("--detector", choices=("mtcnn", "tflite"), default="mtcnn",
                   help="mtcnn (package, TensorFlow) or tflite (TensorFlow-free cascade)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def list_files(src):
    """All regular, non-hidden files under src, sorted, as paths relative to src."""
    out = []
    for root, dirs, files in os.walk(src, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or ".part-" in name:
                continue
            out.append(os.path.relpath(os.path.join(root, name), src))
    return out


def output_paths(dst, rel, fmt, n_faces=1, policy="largest"):
    stem = os.path.splitext(rel)[0]
    if policy == "all":
        return [os.path.join(dst, f"{stem}_{i}.{fmt}") for i in range(n_faces)]
    return [os.path.join(dst, f"{stem}.{fmt}")]


def done_marker(dst, rel, fmt, policy):
    """The file whose existence means rel is finished. With policy "all" the crop _0 is
    written last, so its presence means every crop of that photo is there."""
    return output_paths(dst, rel, fmt, 1, policy)[0]


def _init_worker(opts):
    if opts["workers"] > 1:
        # Each process gets one core's worth of threads instead of all of them.
        os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
        os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from tfface.core.align import FaceAligner
    from tfface.detectors import get_detector

    detector = get_detector(opts["detector"], min_score=opts["min_score"],
                            min_face_size=opts["min_face_size"], max_side=opts["max_side"])
    _STATE["aligner"] = FaceAligner(detector, size=opts["size"], policy=opts["policy"])
    _STATE["opts"] = opts


def _align_one(rel):
    """Returns (rel, faces_written, error or None)."""
    from tfface.core.image import save_image_atomic

    opts = _STATE["opts"]
    src_path = os.path.join(opts["src"], rel)
    try:
        faces = _STATE["aligner"].align(src_path)
        paths = output_paths(opts["dst"], rel, opts["format"], len(faces), opts["policy"])
        # Write in reverse so the done-marker (_0 or the single crop) comes last.
        for path, aligned in reversed(list(zip(paths, faces))):
            save_image_atomic(path, aligned.crop)
        return rel, len(faces), None
    except TFFaceError as err:
        return rel, 0, str(err).replace(src_path + ": ", "")
    except Exception as err:  # noqa: BLE001 - one bad file must not stop a batch job
        return rel, 0, f"{type(err).__name__}: {err}"


def write_failures(dst, failures):
    path = os.path.join(dst, "failures.csv")
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["path", "reason"])
    writer.writerows(sorted(failures))
    tmp = path + f".part-{os.getpid()}"
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        fh.write(buf.getvalue())
    os.replace(tmp, path)
    return path


def remove_stale_parts(dst):
    """Delete temp files left by a killed run (their crops are redone)."""
    removed = 0
    for root, _dirs, files in os.walk(dst):
        for name in files:
            if ".part-" in name:
                os.remove(os.path.join(root, name))
                removed += 1
    return removed


def run(args):
    src = os.path.abspath(args.src)
    dst = os.path.abspath(args.dst)
    if not os.path.isdir(src):
        raise TFFaceError(f"source folder not found: {args.src}")
    if dst == src or dst.startswith(src + os.sep):
        raise TFFaceError("DST must not be SRC or inside it")
    os.makedirs(dst, exist_ok=True)
    remove_stale_parts(dst)
    files = list_files(src)
    if not files:
        raise TFFaceError(f"no files under {args.src}")
    todo = [r for r in files if not os.path.exists(done_marker(dst, r, args.format, args.policy))]
    skipped = len(files) - len(todo)
    opts = {"src": src, "dst": dst, "size": args.size, "policy": args.policy,
            "min_score": args.min_score, "min_face_size": args.min_face_size,
            "max_side": args.max_side, "format": args.format, "detector": args.detector,
            "workers": max(1, args.workers)}
    failures, done, faces_total = [], 0, 0
    first = last = None  # time of the first and last result: the rate excludes start-up
    bar = tqdm(total=len(todo), desc="aligning", unit="img", file=sys.stderr,
               disable=not todo or None)
    if todo:
        if opts["workers"] == 1:
            _init_worker(opts)
            results = map(_align_one, todo)
            pool = None
        else:
            pool = mp.get_context("spawn").Pool(opts["workers"], _init_worker, (opts,))
            results = pool.imap_unordered(_align_one, todo, chunksize=4)
        try:
            for rel, n, err in results:
                last = time.perf_counter()
                first = first or last
                if err is None:
                    done += 1
                    faces_total += n
                else:
                    failures.append((rel, err))
                bar.update(1)
        finally:
            bar.close()
            if pool is not None:
                pool.terminate()
    fail_path = write_failures(dst, failures)
    rate = (len(todo) - 1) / (last - first) if todo and last and last > first else 0.0
    print(f"{PROG}: aligned {done} ({faces_total} faces), skipped {skipped}, failed "
          f"{len(failures)}, {rate:.1f} images/s; crops in {dst}"
          + (f"; failures in {fail_path}" if failures else ""))
    if done == 0 and skipped == 0:
        print(f"{PROG}: error: no image could be aligned (see {fail_path})", file=sys.stderr)
        return 2
    return 0


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.size < 16:
        parser.error("--size must be at least 16")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    try:
        return run(args)
    except Exception as err:  # noqa: BLE001 - one line, never a traceback (--debug shows it)
        return report_error(PROG, err, args.debug)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; run again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
