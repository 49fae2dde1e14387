"""python -m eval.make_pairs ROOT --out pairs.csv: verification pairs from a folder per identity.

Makes a balanced CSV (path1, path2, same, fold) of genuine and impostor pairs, seeded, for
calibrating a model's threshold on data that is not the evaluation set (e.g. held-out CelebA
identities). Paths are written relative to ROOT; pass ROOT as the image root when reading.
"""

import argparse
import csv
import os
import sys

import numpy as np

from tfface.errors import DataError

PROG = "make-pairs"
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


def identities(root, names=None):
    """{identity: [relative image paths]} for identities with images (sorted)."""
    out = {}
    for ident in sorted(os.listdir(root)):
        if names is not None and ident not in names:
            continue
        d = os.path.join(root, ident)
        if not os.path.isdir(d):
            continue
        files = sorted(f"{ident}/{f}" for f in os.listdir(d) if f.lower().endswith(IMAGE_EXTS))
        if files:
            out[ident] = files
    return out


def make_pairs(ids, n_pairs, seed=0, n_folds=10):
    """Half genuine (two images of one identity), half impostor (two identities), no pair
    twice. Returns a list of (path1, path2, same, fold)."""
    rng = np.random.default_rng(seed)
    multi = [k for k, v in ids.items() if len(v) >= 2]
    names = sorted(ids)
    if not multi or len(names) < 2:
        raise DataError("need at least one identity with 2 images and 2 identities")
    half = n_pairs // 2
    seen, genuine, impostor = set(), [], []
    tries = 0
    while len(genuine) < half and tries < 50 * half:
        tries += 1
        files = ids[multi[rng.integers(len(multi))]]
        a, b = sorted(rng.choice(len(files), 2, replace=False))
        key = (files[a], files[b])
        if key not in seen:
            seen.add(key)
            genuine.append((files[a], files[b], 1))
    tries = 0
    while len(impostor) < n_pairs - half and tries < 50 * n_pairs:
        tries += 1
        i, j = rng.choice(len(names), 2, replace=False)
        fa, fb = ids[names[i]], ids[names[j]]
        key = tuple(sorted((fa[rng.integers(len(fa))], fb[rng.integers(len(fb))])))
        if key not in seen:
            seen.add(key)
            impostor.append((*key, 0))
    pairs = genuine + impostor
    order = rng.permutation(len(pairs))
    return [(*pairs[k], int(i * n_folds // len(pairs))) for i, k in enumerate(order)]


def main(argv=None):
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("root", help="folder with one sub-folder of images per identity")
    p.add_argument("--out", required=True, help="CSV to write")
    p.add_argument("--n-pairs", type=int, default=3000)
    p.add_argument("--identities", default=None,
                   help="file listing the identities to use, one per line (default: all)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        names = None
        if args.identities:
            with open(args.identities, encoding="utf-8") as fh:
                names = {line.strip() for line in fh if line.strip()}
        if not os.path.isdir(args.root):
            raise DataError(f"folder not found: {args.root}")
        pairs = make_pairs(identities(args.root, names), args.n_pairs, args.seed)
    except DataError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    with open(args.out, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path1", "path2", "same", "fold"])
        w.writerows(pairs)
    n_same = sum(1 for p in pairs if p[2])
    print(f"{PROG}: {len(pairs)} pairs ({n_same} genuine) in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
