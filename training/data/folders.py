"""List face-image folders: one sub-folder per identity, or a flat folder of unlabelled faces.

The layout is the one ``tfface-align SRC DST`` writes (and that torchvision's ``ImageFolder``,
insightface's ``im2rec`` and FaceNet's ``facenet.get_dataset`` read)::

    root/<identity>/<image>.jpg

Labels are ``0..C-1`` in sorted order of the identity folder names that survive the filters,
so the same tree always gives the same labels. Files that are not images (by extension) and
hidden files are skipped; unreadable images are found later by the loaders, which skip and
count them (listing a million files must not decode them).
"""

import os
from dataclasses import dataclass, field

import numpy as np

from tfface.errors import DataError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


@dataclass(frozen=True)
class ImageList:
    """A listed data set.

    Attributes:
        paths: absolute image paths, length N, grouped by identity in label order.
        labels: int64 (N,) identity index per image in ``0..C-1``; -1 for unlabelled folders.
        class_names: length C, the identity folder name of each label (empty when unlabelled).
        root: the folder that was listed.
    """

    paths: list
    labels: np.ndarray
    class_names: list = field(default_factory=list)
    root: str = ""

    def __len__(self):
        return len(self.paths)

    @property
    def num_classes(self):
        return len(self.class_names)

    def class_counts(self):
        """int64 (C,) number of images per identity."""
        return np.bincount(self.labels[self.labels >= 0], minlength=self.num_classes)


def _is_image(name, extensions):
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in extensions


def _check_root(root):
    root = os.path.abspath(os.fspath(root))
    if not os.path.isdir(root):
        raise DataError(f"{root}: not a folder; expected a folder of identity sub-folders")
    return root


def list_image_folder(root, min_images=1, max_identities=None, max_per_identity=None,
                      extensions=IMAGE_EXTENSIONS):
    """List a folder-per-identity tree.

    Images are taken from each identity folder and its sub-folders (some exports nest them).

    Args:
        root: folder holding one sub-folder per identity.
        min_images: drop identities with fewer images than this (triplet training needs 2+,
            a PxK sampler with oversampling off needs K+).
        max_identities: keep only the first this many identities (sorted by name) after the
            ``min_images`` filter; None keeps all.
        max_per_identity: keep at most this many images per identity (first in sorted
            order); None keeps all.
        extensions: lower-case file extensions counted as images.
    Returns:
        :class:`ImageList` with labels 0..C-1.
    Raises:
        DataError: ``root`` is not a folder, or no identity passes the filters.
    """
    root = _check_root(root)
    if min_images < 1:
        raise DataError(f"min_images must be >= 1; received {min_images}")
    identities = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    paths, labels, names = [], [], []
    for name in identities:
        files = []
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, name)):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            files.extend(os.path.join(dirpath, f) for f in sorted(filenames)
                         if _is_image(f, extensions))
        if max_per_identity is not None:
            files = files[:max_per_identity]
        if len(files) < min_images:
            continue
        if max_identities is not None and len(names) >= max_identities:
            break
        paths.extend(files)
        labels.extend([len(names)] * len(files))
        names.append(name)
    if not names:
        loose = [f for f in os.listdir(root) if _is_image(f, extensions)]
        hint = (f"; found {len(loose)} images directly in it: a flat folder has no labels "
                "(use list_flat_folder, or put each identity in its own sub-folder)"
                if loose else "")
        raise DataError(f"{root}: no identity folder with at least {min_images} images{hint}")
    return ImageList(paths, np.asarray(labels, dtype=np.int64), names, root)


def list_flat_folder(root, recursive=False, extensions=IMAGE_EXTENSIONS):
    """List unlabelled images (e.g. UTKFace for distillation); labels are all -1.

    Args:
        root: folder of images.
        recursive: also list sub-folders.
        extensions: lower-case file extensions counted as images.
    Raises:
        DataError: ``root`` is not a folder or holds no image.
    """
    root = _check_root(root)
    paths = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
        paths.extend(os.path.join(dirpath, f) for f in sorted(filenames) if _is_image(f, extensions))
    if not paths:
        raise DataError(f"{root}: no images ({', '.join(sorted(extensions))})")
    return ImageList(paths, np.full(len(paths), -1, dtype=np.int64), [], root)


def split_by_identity(image_list, val_fraction=0.1, seed=0):
    """Split identities (not images) into train and validation lists, disjoint by person.

    Verification on held-out people is what face recognition measures; an image-level split
    would leak identities. Labels of each part are renumbered 0..C'-1.

    Returns:
        (train, val) :class:`ImageList` pair; val is empty when ``val_fraction`` is 0.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction must be in [0, 1); received {val_fraction}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(image_list.num_classes)
    n_val = round(val_fraction * image_list.num_classes)
    return (_subset_classes(image_list, np.sort(order[n_val:])),
            _subset_classes(image_list, np.sort(order[:n_val])))


def _subset_classes(image_list, classes):
    remap = np.full(image_list.num_classes, -1, dtype=np.int64)
    remap[classes] = np.arange(len(classes))
    new = remap[image_list.labels]
    keep = np.flatnonzero(new >= 0)
    return ImageList([image_list.paths[i] for i in keep], new[keep],
                     [image_list.class_names[c] for c in classes], image_list.root)
