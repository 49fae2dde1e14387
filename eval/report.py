"""The verification report: one JSON file with every number, and a short text summary."""

import datetime
import json
import os
import platform

import numpy as np


def _jsonable(obj):
    """Numpy scalars/arrays and non-finite floats to plain JSON values."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def environment():
    """Versions of the pieces that change numbers."""
    import importlib.metadata as md

    versions = {}
    for pkg in ("tfface", "numpy", "keras", "tensorflow-cpu", "tensorflow", "ai-edge-litert",
                "mtcnn", "opencv-python-headless"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            continue
    return {"python": platform.python_version(), "packages": versions}


def build_report(model, dataset, protocol, metrics, failures, alignment=None, timings=None,
                 plots=None, extra=None):
    """Assemble the report dict (JSON-ready).

    Args:
        model: dict describing the model (path, kind, input size, ...).
        dataset: dict (name, kind, paths, counts).
        protocol: dict (folds, flip, score definition, failure handling).
        metrics: dict from :func:`eval.metrics.verification_metrics`.
        failures: dict with counts and lists of images/pairs that failed.
        alignment: dict of the alignment pass, or None.
        timings: dict of seconds per stage.
        plots: {name: file name} of the PNGs written, and skipped plots with reasons.
    """
    report = {
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "model": model,
        "dataset": dataset,
        "protocol": protocol,
        "metrics": metrics,
        "failures": failures,
        "alignment": alignment,
        "timings_s": timings or {},
        "plots": plots or {},
        "environment": environment(),
    }
    if extra:
        report.update(extra)
    return _jsonable(report)


def write_report(path, report):
    """Write JSON atomically (a temporary file, then rename)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2, allow_nan=False)
        f.write("\n")
    os.replace(tmp, path)
    return path


def summary_lines(report):
    """A few human lines: accuracy, AUC, EER, TAR@FAR, failures."""
    m = report["metrics"]
    d = report["dataset"]
    f = report["failures"]
    lines = [
        (f"{d['name']}: {m['n_pairs']} pairs ({m['n_genuine']} genuine, {m['n_impostor']} "
         f"impostor), {m['n_folds']} folds, model {os.path.basename(report['model']['path'])}"),
        (f"  accuracy {100 * m['accuracy_mean']:.2f}% +- {100 * m['accuracy_std']:.2f}  "
         f"(best threshold {m['best_threshold']:.4f}: {100 * m['best_accuracy']:.2f}%)"),
        f"  AUC {m['auc']:.4f}  EER {100 * m['eer']:.2f}%",
    ]
    tars = "  ".join(f"TAR@FAR={far}: {100 * v['tar']:.2f}%" for far, v in m["tar_at_far"].items())
    lines.append(f"  {tars}")
    lines.append(f"  failed images {f['n_images_failed']} of {d['n_images']} "
                 f"({f['handling']}); pairs touched {f['n_pairs_affected']}")
    return lines
