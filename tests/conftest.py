"""Shared fixtures: paths to committed fixtures and to ../shared/data (skipped when absent)."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED_DATA = Path(os.environ.get("TFFACE_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def fixtures_dir():
    return FIXTURES


@pytest.fixture(scope="session")
def shared_data():
    """Root of ../shared/data; tests using it skip cleanly where it is not present."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def mtcnn_detector():
    """One MTCNN detector for the whole run (creating one loads TensorFlow and the weights)."""
    from tfface.detect import MTCNNDetector

    return MTCNNDetector()
