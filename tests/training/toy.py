"""Tiny generated training sets for the training-program tests: identities that differ by
colour (separable at a glance), written as JPEG folders."""

import os

import numpy as np
from PIL import Image

# Far-apart base colours; each identity's images are its colour plus Gaussian noise.
COLOURS = ((220, 40, 40), (40, 200, 40), (40, 40, 220), (220, 220, 40), (40, 220, 220),
           (220, 40, 220))


def write_identities(root, n_ids=3, per_id=16, size=48, noise=20.0, seed=0):
    """Write ``root/idNN/NNN.jpg`` (uint8 RGB, ``size`` x ``size``). Returns ``root``."""
    rng = np.random.default_rng(seed)
    for c in range(n_ids):
        folder = os.path.join(root, f"id{c:02d}")
        os.makedirs(folder, exist_ok=True)
        base = np.array(COLOURS[c % len(COLOURS)], np.float64)
        for j in range(per_id):
            img = np.clip(base + rng.normal(0, noise, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(os.path.join(folder, f"{j:03d}.jpg"), quality=90)
    return str(root)


def write_teacher(data_root, subdir, path, dim=16, seed=1):
    """Teacher ``.npz`` for the images under ``data_root/subdir``: per identity a random
    centre plus a large shared offset (like dlib's common component) and small noise."""
    rng = np.random.default_rng(seed)
    rel = sorted(os.path.relpath(os.path.join(d, f), data_root)
                 for d, _, files in os.walk(os.path.join(data_root, subdir)) for f in files)
    ids = sorted({r.split(os.sep)[1] for r in rel})
    centres = rng.normal(size=(len(ids), dim))
    emb = np.stack([centres[ids.index(r.split(os.sep)[1])] for r in rel]) + 3.0
    emb = emb + 0.05 * rng.normal(size=emb.shape)
    np.savez(path, path=np.array(rel), emb=emb.astype(np.float32),
             emb_flip=(emb + 0.01).astype(np.float32), detected=np.ones(len(rel), np.uint8))
    return path
