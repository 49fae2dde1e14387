"""tfface-export: named signatures, unit outputs, parity with Keras, model cards, errors."""

import json

import numpy as np
import pytest

from tfface.core.image import load_image
from tfface.core.preprocess import normalize_face
from tfface.export.cli import main


def crops_of(folder):
    return np.stack([load_image(p) for p in sorted(folder.glob("*.png"))])


@pytest.mark.parametrize("variant,min_cos", [("float32", 0.99999), ("float16", 0.999),
                                             ("dynamic", 0.99), ("int8", 0.98)])
def test_variant_matches_keras(exported, aligned_dir, variant, min_cos):
    import keras
    from ai_edge_litert.interpreter import Interpreter

    path = exported / "out" / f"tiny_{variant}.tflite"
    interp = Interpreter(model_path=str(path))
    assert interp.get_signature_list() == {
        "serving_default": {"inputs": ["image"], "outputs": ["embedding"]}}
    runner = interp.get_signature_runner("serving_default")
    crops = crops_of(aligned_dir)
    x = normalize_face(crops)
    detail = runner.get_input_details()["image"]
    if variant == "int8":
        assert detail["dtype"] == np.int8
        scale, zero = detail["quantization"]
        x = np.clip(np.round(x / scale) + zero, -128, 127).astype(np.int8)
    else:
        assert detail["dtype"] == np.float32
    got = runner(image=x)["embedding"]
    # Independent reference: the Keras model, normalised with numpy.
    ref = np.asarray(keras.saving.load_model(exported / "tiny.keras")(normalize_face(crops)))
    ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    # int8 computes the normalisation in 8 bits: unit length to within its resolution.
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0,
                               atol=0.02 if variant == "int8" else 1e-3)
    cos = np.sum(got * ref, axis=1)
    assert cos.min() > min_cos, cos


def test_cards_and_report(exported):
    out = exported / "out"
    report = json.loads((out / "parity_report.json").read_text())
    assert set(report["variants"]) == {"float32", "float16", "dynamic", "int8"}
    for variant, entry in report["variants"].items():
        card = json.loads((out / f"tiny_{variant}.json").read_text())
        assert card["variant"] == variant
        assert card["input"]["name"] == "image" and card["output"]["name"] == "embedding"
        assert card["input"]["color_order"] == "RGB"
        assert card["input"]["preprocessing"]["formula"] == "(x - 127.5) / 128"
        assert card["output"]["embedding_size"] == 32 and card["output"]["l2_normalized"]
        assert card["file_size_bytes"] == (out / f"tiny_{variant}.tflite").stat().st_size
        assert card["input_size"] == [112, 112]
        assert entry["cosine_to_keras"]["n_faces"] == 16
        if variant == "int8":
            q = card["input"]["quantization"]
            assert q["scale"] > 0 and -128 <= q["zero_point"] <= 127
    sizes = {v: e["size_bytes"] for v, e in report["variants"].items()}
    assert sizes["float16"] < sizes["float32"] and sizes["dynamic"] < sizes["float32"]


def test_errors(tmp_path, capsys, exported):
    assert main([str(tmp_path / "missing.keras"), "--out", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    assert main([str(tmp_path / "junk.keras"), "--out", str(tmp_path)]) == 2
    assert "cannot load" in capsys.readouterr().err
    model = str(exported / "tiny.keras")
    assert main([model, "--out", str(tmp_path), "--variants", "int8"]) == 2
    assert "--representative" in capsys.readouterr().err
    assert main([model, "--out", str(tmp_path), "--variants", "float64"]) == 2
    assert "unknown variant" in capsys.readouterr().err


def test_uint8_input_variant(exported, aligned_dir, tmp_path):
    """A uint8-input full-int8 model: the runtime quantises with the tensor's parameters."""
    import keras

    from tflite.embedder import TFLiteEmbedder

    assert main([str(exported / "tiny.keras"), "--out", str(tmp_path), "--variants", "int8",
                 "--int8-input", "uint8", "--representative", str(aligned_dir)]) == 0
    emb = TFLiteEmbedder(tmp_path / "tiny_int8.tflite")
    assert emb.input_dtype == "uint8"
    card = json.loads((tmp_path / "tiny_int8.json").read_text())
    assert card["input"]["dtype"] == "uint8" and card["int8_input"] == "uint8"
    crops = crops_of(aligned_dir)
    ref = np.asarray(keras.saving.load_model(exported / "tiny.keras")(normalize_face(crops)))
    ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    assert np.sum(emb(crops) * ref, axis=1).min() > 0.98
