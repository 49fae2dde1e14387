"""Training programs: python -m training.arcface | training.triplet | training.distill."""
