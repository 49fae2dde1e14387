"""python -m training.prepare_distill: a distillation training set from aligned crops.

Links every aligned crop that has a teacher embedding into OUT (keeping the teacher's relative
paths, so `training.distill --data OUT --teacher OUT/*.npz` finds them), writes teacher files
filtered to those rows, and holds out every N-th CelebA identity for threshold calibration
(their crops are linked under OUT/holdout/<id>/ and never trained on), with a pairs CSV.

    python -m training.prepare_distill --aligned ALIGNED --teacher T1.npz T2.npz --out OUT
"""

import argparse
import os
import sys

import numpy as np

from tfface.errors import DataError

PROG = "prepare-distill"


def main(argv=None):
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--aligned", required=True,
                   help="root of tfface-align output, with the teacher's folder names "
                   "(e.g. ALIGNED/celeba/<id>/<file>.png)")
    p.add_argument("--teacher", nargs="+", required=True, help="teacher .npz files")
    p.add_argument("--out", required=True, help="output folder (symlinks + filtered .npz)")
    p.add_argument("--ext", default=".png", help="extension of the aligned crops")
    p.add_argument("--holdout-set", default="celeba",
                   help="labelled set whose identities are partly held out")
    p.add_argument("--holdout-every", type=int, default=5,
                   help="hold out every N-th identity of --holdout-set (0: none)")
    p.add_argument("--pairs", type=int, default=3000, help="calibration pairs to write")
    args = p.parse_args(argv)
    try:
        return run(args)
    except DataError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2


def run(args):
    from eval.make_pairs import identities, make_pairs

    aligned = os.path.abspath(args.aligned)
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    ids = sorted(os.listdir(os.path.join(aligned, args.holdout_set))) if os.path.isdir(
        os.path.join(aligned, args.holdout_set)) else []
    held = set(ids[::args.holdout_every]) if args.holdout_every else set()
    total_kept = total_missing = total_held = 0
    for f in args.teacher:
        with np.load(f, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
        keep = np.zeros(len(data["path"]), bool)
        for i, rel in enumerate(data["path"]):
            rel = str(rel)
            parts = rel.split("/")
            src = os.path.join(aligned, os.path.splitext(rel)[0] + args.ext)
            if not os.path.isfile(src):
                total_missing += 1
                continue
            if parts[0] == args.holdout_set and len(parts) > 2 and parts[1] in held:
                dst = os.path.join(out, "holdout", *parts[1:])
                total_held += 1
            else:
                dst = os.path.join(out, rel)
                keep[i] = True
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            if not os.path.lexists(dst):
                os.symlink(src, dst)  # crops keep their teacher path; content is PNG
        name = os.path.join(out, "teacher_" + os.path.basename(f))
        np.savez(name, **{k: v[keep] for k, v in data.items()})
        total_kept += int(keep.sum())
        print(f"{PROG}: {name}: {int(keep.sum())} training rows")
    with open(os.path.join(out, "holdout_identities.txt"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(sorted(held)) + ("\n" if held else ""))
    if held and args.pairs:
        import csv

        hold_root = os.path.join(out, "holdout")
        pairs = make_pairs(identities(hold_root), args.pairs, seed=0)
        with open(os.path.join(out, "holdout_pairs.csv"), "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["path1", "path2", "same", "fold"])
            w.writerows(pairs)
    print(f"{PROG}: {total_kept} training images, {total_held} held out "
          f"({len(held)} identities), {total_missing} without an aligned crop; in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
