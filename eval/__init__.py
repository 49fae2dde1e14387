"""Evaluation: verification benchmarks, reports, plots and speed.

Modules:
    metrics: 10-fold accuracy (threshold chosen on the other folds), ROC AUC, EER, TAR@FAR.
    pairs: LFW pairs.txt, CSV pairs, insightface .bin (restricted unpickler).
    align_cache: detection + alignment of benchmark photos, cached on disk.
    embedders: .keras / .tflite models and precomputed .npz embeddings; flip augmentation.
    plots, report: PNG plots and report.json.
    verification: the ``tfface-eval`` command (``python -m eval.verification``).
    speed: per-face latency and faces/s (``python -m eval.speed``).
"""
