"""Verification pair sets: LFW ``pairs.txt``, CSV pair lists and insightface ``.bin`` files.

All readers return a :class:`PairSet`: a list of unique image sources plus index pairs, so an
image used by several pairs is embedded once.

insightface ``.bin`` files (lfw, cfp_fp, agedb_30, calfw, cplfw) are pickles of
``(list of encoded JPEG/PNG bytes, list of bools)``: image ``2i`` and ``2i+1`` form pair ``i``.
Unpickling can run arbitrary code, so they are read with :class:`RestrictedUnpickler`, which
builds nothing but bytes, lists, tuples, bools, numbers and numpy arrays of plain dtypes.
"""

import csv
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfface.errors import DataError

PAIR_FORMATS = ("lfw", "csv", "bin")
_TRUE = {"1", "true", "same", "yes", "y", "t"}
_FALSE = {"0", "false", "different", "diff", "no", "n", "f"}


@dataclass
class PairSet:
    """Pairs over a list of unique images.

    Attributes:
        name: data set name (for reports), e.g. "lfw".
        kind: "lfw", "csv" or "bin".
        keys: str (M,) one key per unique image: its path (absolute) or "bin:<index>".
        left, right: int64 (P,) indices into ``keys`` of each pair's images.
        issame: bool (P,) True for genuine pairs.
        folds: int64 (P,) fold of each pair, or None for consecutive blocks.
        identities: str (M,) identity of each image, or None where unknown (.bin).
        encoded: list of M encoded image bytes (.bin sets), else None.
    """

    name: str
    kind: str
    keys: list
    left: np.ndarray
    right: np.ndarray
    issame: np.ndarray
    folds: np.ndarray = None
    identities: list = None
    encoded: list = None

    @property
    def n_pairs(self):
        return int(self.issame.size)

    def pair_keys(self):
        """(key1, key2, issame) tuples, in file order."""
        return [(self.keys[a], self.keys[b], bool(s))
                for a, b, s in zip(self.left, self.right, self.issame)]


def _index(pairs):
    """Unique keys and index arrays from (key1, key2, issame) tuples."""
    keys, where, left, right = [], {}, [], []
    for k1, k2, _ in pairs:
        for k, side in ((k1, left), (k2, right)):
            if k not in where:
                where[k] = len(keys)
                keys.append(k)
            side.append(where[k])
    issame = np.array([bool(s) for _, _, s in pairs], dtype=bool)
    return keys, np.array(left, dtype=np.int64), np.array(right, dtype=np.int64), issame


def _default_name(path):
    """The file's stem, or its folder's name for generic stems (``lfw/pairs.txt`` -> "lfw")."""
    p = Path(os.path.abspath(path))
    return p.parent.name if p.stem.lower() in ("pairs", "pairs_test", "test") else p.stem


def _lfw_path(root, name, number, line_no, pairs_path):
    try:
        n = int(number)
    except ValueError:
        raise DataError(f"{pairs_path}:{line_no}: image number {number!r} is not an integer") \
            from None
    return os.path.join(root, name, f"{name}_{n:04d}.jpg")


def _read_lfw(pairs_path, images_root):
    """Pairs and the header's (n_sets, n_per_class) (None where the header is one number)."""
    pairs_path = os.fspath(pairs_path)
    root = os.path.abspath(os.fspath(images_root))
    try:
        with open(pairs_path, encoding="utf-8") as f:
            lines = [ln.strip() for ln in f]
    except OSError as err:
        raise DataError(f"cannot read pairs file {pairs_path}: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise DataError(f"{pairs_path}: not a text pairs file") from err
    lines = [(i + 1, ln) for i, ln in enumerate(lines) if ln]
    if not lines:
        raise DataError(f"{pairs_path}: empty pairs file")
    head = lines[0][1].split()
    if not 1 <= len(head) <= 2 or not all(h.isdigit() for h in head):
        raise DataError(f"{pairs_path}:1: expected a header '<n_sets> <n_per_class>'; "
                        f"received {lines[0][1]!r}")
    pairs = []
    for line_no, ln in lines[1:]:
        parts = ln.split()
        if len(parts) == 3:
            name, a, b = parts
            pairs.append((_lfw_path(root, name, a, line_no, pairs_path),
                          _lfw_path(root, name, b, line_no, pairs_path), True))
        elif len(parts) == 4:
            n1, a, n2, b = parts
            pairs.append((_lfw_path(root, n1, a, line_no, pairs_path),
                          _lfw_path(root, n2, b, line_no, pairs_path), False))
        else:
            raise DataError(f"{pairs_path}:{line_no}: expected 'name n1 n2' or "
                            f"'name1 n1 name2 n2'; received {ln!r}")
    header = None
    if len(head) == 2:
        header = (int(head[0]), int(head[1]))
        expected = header[0] * header[1] * 2
        if expected != len(pairs):
            raise DataError(f"{pairs_path}: header says {header[0]} sets x {header[1]} x 2 = "
                            f"{expected} pairs; the file has {len(pairs)}")
    return pairs, header


def read_lfw_pairs(pairs_path, images_root):
    """Read LFW's ``pairs.txt`` (View 2: header ``10 300``, then per set 300 matched lines
    ``name n1 n2`` and 300 mismatched lines ``name1 n1 name2 n2``).

    Args:
        pairs_path: path of pairs.txt.
        images_root: folder holding ``<Name>/<Name>_<NNNN>.jpg``.
    Returns:
        list of (path1, path2, issame), absolute paths, in file order.
    Raises:
        DataError: unreadable or malformed file (names the line).
    """
    return _read_lfw(pairs_path, images_root)[0]


def load_lfw_pairs(pairs_path, images_root, name=None):
    """LFW pairs as a :class:`PairSet`, with the folds of the file (consecutive blocks of
    ``2 * n_per_class`` pairs), not random folds."""
    pairs, header = _read_lfw(pairs_path, images_root)
    keys, left, right, issame = _index(pairs)
    folds = None
    if header is not None:
        folds = np.repeat(np.arange(header[0], dtype=np.int64), 2 * header[1])
    ids = [Path(k).parent.name for k in keys]
    return PairSet(name or _default_name(pairs_path), "lfw", keys, left, right, issame,
                   folds=folds, identities=ids)


def _parse_same(value, where):
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise DataError(f"{where}: 'same' must be 1/0, true/false or same/different; "
                    f"received {value!r}")


def load_csv_pairs(csv_path, images_root=None, name=None):
    """Read a CSV of pairs: columns ``path1, path2, same`` and an optional ``fold`` column;
    a header row is optional. Relative paths are resolved against ``images_root`` (default:
    the CSV's folder). Identity of an image = the name of its folder.
    """
    csv_path = os.fspath(csv_path)
    root = os.path.abspath(images_root if images_root is not None
                           else os.path.dirname(csv_path) or ".")
    try:
        with open(csv_path, newline="", encoding="utf-8") as f:
            rows = [(i + 1, r) for i, r in enumerate(csv.reader(f)) if any(c.strip() for c in r)]
    except OSError as err:
        raise DataError(f"cannot read pairs file {csv_path}: {err.strerror}") from err
    except (UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{csv_path}: not a CSV pairs file ({err})") from err
    if not rows:
        raise DataError(f"{csv_path}: empty pairs file")
    has_fold = False
    first = [c.strip().lower() for c in rows[0][1]]
    if first[:3] == ["path1", "path2", "same"]:
        has_fold = len(first) > 3 and first[3] == "fold"
        rows = rows[1:]
    pairs, folds = [], []
    for line_no, row in rows:
        where = f"{csv_path}:{line_no}"
        if len(row) < 3 or (has_fold and len(row) < 4):
            raise DataError(f"{where}: expected columns path1, path2, same"
                            f"{', fold' if has_fold else ''}; received {row!r}")
        p1, p2 = (os.path.join(root, p.strip()) for p in row[:2])
        pairs.append((os.path.normpath(p1), os.path.normpath(p2), _parse_same(row[2], where)))
        if has_fold:
            try:
                folds.append(int(row[3]))
            except ValueError:
                raise DataError(f"{where}: fold {row[3]!r} is not an integer") from None
    keys, left, right, issame = _index(pairs)
    ids = [Path(k).parent.name for k in keys]
    return PairSet(name or _default_name(csv_path), "csv", keys, left, right, issame,
                   folds=np.array(folds, dtype=np.int64) if has_fold else None, identities=ids)


# --- insightface .bin ---------------------------------------------------------------------------

def _checked_dtype(*args, **kwargs):
    dt = np.dtype(*args, **kwargs)
    if dt.hasobject:
        raise DataError(f"refusing a pickled numpy array of dtype {dt} (may hold objects)")
    return dt


def _latin1_encode(text, encoding="latin1"):
    if not isinstance(text, str) or encoding.lower().replace("-", "") != "latin1":
        raise DataError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _multiarray():
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:
        from numpy.core import multiarray
    return multiarray


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler for data files: allows only numpy's array and scalar reconstruction (plain
    dtypes); every other global (``os.system``, ``builtins.eval``, ...) raises DataError
    before anything is called. Bytes, str, lists, tuples, dicts, numbers and bools need no
    global and load as usual; :func:`load_bin` then checks the structure."""

    def find_class(self, module, name):
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("numpy", "dtype"):
            return _checked_dtype
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode  # protocol-2 pickles from Python 3 store bytes this way
        if name in ("_reconstruct", "scalar") and module in ("numpy.core.multiarray",
                                                              "numpy._core.multiarray"):
            return getattr(_multiarray(), name)
        raise DataError(f"refusing to load pickled global {module}.{name}: a data file should "
                        "hold only bytes, lists, bools and numpy arrays")


def _plain(obj, depth=0):
    """True when obj is built only from bytes, lists/tuples, bools, ints and plain arrays."""
    if depth > 4:
        return False
    if isinstance(obj, (bytes, bytearray, bool, int, float, np.bool_, np.integer, np.floating)):
        return True
    if isinstance(obj, np.ndarray):
        return not obj.dtype.hasobject
    if isinstance(obj, (list, tuple)):
        return all(_plain(x, depth + 1) for x in obj)
    return False


def load_bin(bin_path, name=None):
    """Read an insightface verification ``.bin`` (``pickle`` of ``(bins, issame_list)``).

    Returns:
        :class:`PairSet` with ``encoded`` holding the image bytes and keys ``bin:<i>``.
    Raises:
        DataError: not such a file, or it holds anything but the allowed types.
    """
    bin_path = os.fspath(bin_path)
    try:
        with open(bin_path, "rb") as f:
            data = RestrictedUnpickler(f, encoding="bytes").load()
    except OSError as err:
        raise DataError(f"cannot read {bin_path}: {err.strerror}") from err
    except DataError as err:
        raise DataError(f"{bin_path}: {err}") from err
    except Exception as err:  # any unpickling failure means "not a .bin file"
        raise DataError(f"{bin_path}: not an insightface .bin pickle ({err})") from err
    if not (isinstance(data, (tuple, list)) and len(data) == 2 and _plain(data[0])
            and _plain(data[1])):
        raise DataError(f"{bin_path}: expected a pickle of (list of image bytes, list of bools)")
    bins, issame = data
    encoded = [bytes(b) if not isinstance(b, np.ndarray) else b.tobytes() for b in bins]
    issame = np.asarray(issame).reshape(-1)
    if issame.dtype != bool and not np.isin(issame, (0, 1)).all():
        raise DataError(f"{bin_path}: labels must be bools")
    if len(encoded) != 2 * issame.size:
        raise DataError(f"{bin_path}: {len(encoded)} images for {issame.size} pairs; "
                        f"expected {2 * issame.size}")
    n = issame.size
    return PairSet(name or Path(bin_path).stem, "bin", [f"bin:{i}" for i in range(2 * n)],
                   np.arange(0, 2 * n, 2, dtype=np.int64), np.arange(1, 2 * n, 2, dtype=np.int64),
                   issame.astype(bool), encoded=encoded)


def load_pairs(path, images_root=None, name=None):
    """Any supported pair file, by extension: ``.bin`` insightface, ``.csv``, else LFW
    pairs.txt (needs ``images_root``)."""
    ext = Path(path).suffix.lower()
    if not os.path.isfile(path):
        raise DataError(f"pairs file not found: {path}")
    if ext == ".bin":
        return load_bin(path, name)
    if ext == ".csv":
        return load_csv_pairs(path, images_root, name)
    if images_root is None:
        raise DataError(f"{path}: an LFW pairs file needs the image folder (--images)")
    return load_lfw_pairs(path, images_root, name)
