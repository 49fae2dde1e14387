"""A tiny Keras embedding model, aligned sample crops, and its TFLite exports (module-shared)."""

import numpy as np
import pytest

from tests.conftest import ROOT

SAMPLES = sorted((ROOT / "samples").glob("*.jpg"))


def tiny_embedding_model(size=112, dim=32, seed=0):
    """A small CNN with plain Keras layers (no BatchNorm, so random-init activations keep a
    healthy scale and the direction of the embedding is numerically meaningful)."""
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((size, size, 3), name="image")
    x = keras.layers.Conv2D(16, 5, strides=4, activation="relu")(inp)
    x = keras.layers.Conv2D(32, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(dim)(x)
    return keras.Model(inp, out, name="tiny")


@pytest.fixture(scope="session")
def aligned_dir(tmp_path_factory, mtcnn_detector):
    """The four sample photos aligned to 112x112, plus flipped and shifted copies (16 crops)."""
    from tfface.core.align import FaceAligner
    from tfface.core.image import save_image_atomic

    out = tmp_path_factory.mktemp("aligned")
    aligner = FaceAligner(mtcnn_detector, size=112)
    for p in SAMPLES:
        crop = aligner.align_one(p)
        save_image_atomic(out / f"{p.stem}.png", crop)
        save_image_atomic(out / f"{p.stem}_flip.png", crop[:, ::-1])
        save_image_atomic(out / f"{p.stem}_shift.png", np.roll(crop, 3, axis=1))
        save_image_atomic(out / f"{p.stem}_dark.png", (crop * 0.7).astype(np.uint8))
    return out


@pytest.fixture(scope="session")
def exported(tmp_path_factory, aligned_dir):
    """tiny.keras exported to all four TFLite variants with tfface-export."""
    from tfface.export.cli import main

    d = tmp_path_factory.mktemp("export")
    model = tiny_embedding_model()
    model.save(d / "tiny.keras")
    rc = main([str(d / "tiny.keras"), "--out", str(d / "out"), "--representative",
               str(aligned_dir)])
    assert rc == 0
    return d
