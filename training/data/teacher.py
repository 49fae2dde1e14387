"""Teacher embeddings for distillation (``teacher/*.npz``: path, emb, emb_flip, detected).

The dlib descriptors share a large common component (unit-normalised, random pairs of
different people have cosine about 0.83), so a student regressing them by cosine can sit at
the centroid with a small loss. Targets are therefore centred by the mean descriptor of the
*training* rows (after centring random pairs have cosine about 0.0); the mean is kept in
:attr:`TeacherEmbeddings.mean` and written next to the model with :func:`save_teacher_mean`
so the same shift can be applied to the teacher at evaluation time.
"""

import json
import os
from dataclasses import dataclass, replace

import numpy as np

from tfface.errors import DataError
from training.data.folders import ImageList

_KEYS = ("path", "emb", "emb_flip")


@dataclass(frozen=True)
class TeacherEmbeddings:
    """Teacher targets, one row per image.

    Attributes:
        paths: absolute image paths (N,).
        emb: float32 (N, D) descriptor of the image (centred when ``mean`` is set).
        emb_flip: float32 (N, D) descriptor of the mirrored image (same centring).
        detected: uint8 (N,) 1 where the teacher's detector found the face.
        mean: float32 (D,) the subtracted mean, or None when not centred.
        dropped: rows left out by ``load_teacher(drop_missing=True)``.
    """

    paths: list
    emb: np.ndarray
    emb_flip: np.ndarray
    detected: np.ndarray
    mean: np.ndarray = None
    dropped: int = 0

    def __len__(self):
        return len(self.paths)

    @property
    def dim(self):
        return self.emb.shape[1]

    def subset(self, rows):
        rows = np.asarray(rows, dtype=np.int64)
        return replace(self, paths=[self.paths[i] for i in rows], emb=self.emb[rows],
                       emb_flip=self.emb_flip[rows], detected=self.detected[rows])

    def centered(self, mean=None):
        """Targets minus ``mean`` (default: the mean of these rows, both orientations).

        Call it on the training rows, then pass the returned ``.mean`` to validation rows.
        """
        if self.mean is not None:
            raise DataError("teacher embeddings are already centred")
        if mean is None:
            mean = np.concatenate([self.emb, self.emb_flip]).astype(np.float64).mean(axis=0)
        mean = np.asarray(mean, dtype=np.float32)
        if mean.shape != (self.dim,):
            raise DataError(f"teacher mean has shape {mean.shape}; expected ({self.dim},)")
        return replace(self, emb=self.emb - mean, emb_flip=self.emb_flip - mean, mean=mean)

    def image_list(self):
        """The images as an unlabelled :class:`ImageList` (labels -1), rows in order."""
        return ImageList(list(self.paths), np.full(len(self), -1, dtype=np.int64), [], "")

    def targets(self):
        """(emb, emb_flip) float32 (N, D) pair, as the pipelines' ``targets`` argument."""
        return self.emb, self.emb_flip

    def rows_for(self, paths):
        """Row of each of ``paths`` (absolute); DataError naming the first one missing."""
        where = {os.path.normpath(p): i for i, p in enumerate(self.paths)}
        rows = []
        for p in paths:
            row = where.get(os.path.normpath(os.path.abspath(p)))
            if row is None:
                raise DataError(f"{p}: no teacher embedding for this image")
            rows.append(row)
        return np.asarray(rows, dtype=np.int64)


def load_teacher(files, data_root, only_detected=False, image_ext=None, drop_missing=False):
    """Read and concatenate teacher ``.npz`` files.

    Args:
        files: one path or a list of paths to ``.npz`` files with ``path``, ``emb``,
            ``emb_flip`` (and optionally ``detected``).
        data_root: folder the stored relative paths are relative to
            (``../shared/data`` for ``celeba/2880/000001.jpg``).
        only_detected: keep only rows where the teacher's detector found the face.
        image_ext: replace each stored extension by this one (".png"): for crops written
            by ``tfface-align`` (which keeps relative paths but changes the format). Align
            keeping the set's folder name, e.g. ``tfface-align ../shared/data/celeba
            aligned/celeba``, and pass ``data_root="aligned"``.
        drop_missing: drop rows whose image file does not exist (faces the aligner could
            not find); their number is in ``TeacherEmbeddings.dropped``. When False a
            missing file is a DataError.
    Returns:
        :class:`TeacherEmbeddings`, not centred (see :meth:`TeacherEmbeddings.centered`).
    Raises:
        DataError: missing file or key, or inconsistent shapes.
    """
    if isinstance(files, (str, os.PathLike)):
        files = [files]
    paths, embs, flips, detected = [], [], [], []
    for f in files:
        try:
            with np.load(f, allow_pickle=False) as z:
                missing = [k for k in _KEYS if k not in z]
                if missing:
                    raise DataError(f"{f}: missing {', '.join(missing)}; expected keys path, "
                                    "emb, emb_flip")
                rel, emb, flip = z["path"], z["emb"].astype(np.float32), z["emb_flip"]
                det = z["detected"].astype(np.uint8) if "detected" in z else np.ones(len(rel),
                                                                                     np.uint8)
        except (OSError, ValueError) as err:
            if isinstance(err, DataError):
                raise
            raise DataError(f"{f}: cannot read teacher embeddings ({err})") from err
        if emb.ndim != 2 or flip.shape != emb.shape or len(rel) != len(emb) or len(det) != len(emb):
            raise DataError(f"{f}: inconsistent shapes path {rel.shape}, emb {emb.shape}, "
                            f"emb_flip {flip.shape}, detected {det.shape}")
        for p in rel:
            p = str(p)
            if image_ext is not None:
                p = os.path.splitext(p)[0] + "." + image_ext.lstrip(".")
            paths.append(os.path.abspath(os.path.join(data_root, p)))
        embs.append(emb)
        flips.append(flip.astype(np.float32))
        detected.append(det)
    if len({e.shape[1] for e in embs}) > 1:
        raise DataError(f"teacher files have different dimensions {[e.shape[1] for e in embs]}")
    teacher = TeacherEmbeddings(paths, np.concatenate(embs), np.concatenate(flips),
                                np.concatenate(detected))
    if only_detected:
        teacher = teacher.subset(np.flatnonzero(teacher.detected))
    exists = np.array([os.path.isfile(p) for p in teacher.paths], dtype=bool)
    if not exists.all():
        first = teacher.paths[int(np.argmin(exists))]
        if not drop_missing:
            raise DataError(f"{first}: image of a teacher embedding not found "
                            f"({int((~exists).sum())} of {len(exists)} missing); check data_root "
                            "and image_ext, or pass drop_missing=True")
        teacher = replace(teacher.subset(np.flatnonzero(exists)), dropped=int((~exists).sum()))
    return teacher


def select_targets(emb, emb_flip, flipped):
    """Per-row target: ``emb_flip`` where the image was mirrored, else ``emb``.

    Args:
        emb, emb_flip: float32 (B, D).
        flipped: bool (B,).
    Returns:
        float32 (B, D).
    """
    return np.where(np.asarray(flipped, dtype=bool)[:, None], emb_flip, emb).astype(np.float32)


def save_teacher_mean(path, mean, **info):
    """Write the centring mean as JSON (``{"mean": [...], "dim": D, **info}``)."""
    mean = np.asarray(mean, dtype=np.float32)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump({"dim": int(mean.shape[0]), "mean": mean.tolist(), **info}, fh)


def load_teacher_mean(path):
    """Read :func:`save_teacher_mean`'s file: float32 (D,)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        return np.asarray(data["mean"], dtype=np.float32)
    except (OSError, ValueError, KeyError) as err:
        raise DataError(f"{path}: not a teacher mean file ({err})") from err
