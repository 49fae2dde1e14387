"""FaceVerifier and tfface-verify on real photos, with exit codes and a TensorFlow-free run."""

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT
from tfface.cli.verify import main
from tfface.errors import ModelError

A1, A2, B1 = (str(ROOT / "samples" / n) for n in ("person_a_1.jpg", "person_a_2.jpg",
                                                     "person_b_1.jpg"))


@pytest.fixture(scope="module")
def tiny_int8(exported):
    return str(exported / "out" / "tiny_int8.tflite")


def test_verifier_api_keras_and_tflite_agree(exported):
    from tfface.verifier import FaceVerifier

    k = FaceVerifier(str(exported / "tiny.keras"), detector="tflite")
    t = FaceVerifier(str(exported / "out" / "tiny_float32.tflite"), detector="tflite")
    ek, et = k.embed([A1, B1]), t.embed([A1, B1])
    assert ek.shape == et.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(et, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(ek, et, atol=1e-4)
    r = t.verify(A1, A1)
    assert r.similarity == pytest.approx(1.0, abs=1e-5) and r.distance < 1e-2 and r.same
    r2 = t.verify(A1, B1)
    assert r2.distance == pytest.approx(np.sqrt(2 - 2 * r2.similarity), abs=1e-6)
    assert r2.threshold == 0.5  # no calibrated threshold in the card: the documented fallback


def test_cli_exit_codes(tiny_int8, capsys):
    assert main([A1, A1, "--model", tiny_int8, "--threshold", "0.99"]) == 0
    assert "same person" in capsys.readouterr().out
    assert main([A1, B1, "--model", tiny_int8, "--threshold", "1.01"]) == 1
    assert "different people" in capsys.readouterr().out
    assert main([A1, A2, "--model", tiny_int8, "--json"]) in (0, 1)
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"similarity", "distance", "threshold", "same", "model"}


@pytest.mark.parametrize("case", ["missing_image", "no_face", "bad_model", "missing_model",
                                  "not_image"])
def test_cli_errors_exit_2_with_one_line(tiny_int8, tmp_path, capsys, case):
    args = [A1, A2, "--model", tiny_int8]
    if case == "missing_image":
        args[1] = str(tmp_path / "nope.jpg")
    elif case == "no_face":
        from PIL import Image

        Image.fromarray(np.full((120, 160, 3), 200, np.uint8)).save(tmp_path / "wall.png")
        args[1] = str(tmp_path / "wall.png")
    elif case == "bad_model":
        (tmp_path / "m.tflite").write_bytes(b"garbage" * 10)
        args[3] = str(tmp_path / "m.tflite")
    elif case == "missing_model":
        args[3] = str(tmp_path / "none.tflite")
    elif case == "not_image":
        (tmp_path / "x.jpg").write_text("hello")
        args[0] = str(tmp_path / "x.jpg")
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tfface-verify: error:") and "\n" not in err
    if case == "no_face":
        assert "no face found in" in err and "wall.png" in err


def test_unknown_named_model():
    from tfface.verifier import resolve_model

    with pytest.raises(ModelError, match="not found"):
        resolve_model("no-such-model")


BLOCKER = r"""
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "tf_keras", "jax"):
            raise ImportError(f"blocked import of {name}")
sys.meta_path.insert(0, Block())
try:
    import tensorflow  # noqa
    raise SystemExit("blocker failed")
except ImportError:
    pass
from tfface.cli.verify import main
rc = main(sys.argv[1:])
assert not [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")], "TF loaded"
print("RC", rc)
"""


def test_verify_two_photos_imports_no_tensorflow(tiny_int8):
    proc = subprocess.run([sys.executable, "-c", BLOCKER, A1, A1, "--model", tiny_int8,
                           "--threshold", "0.9", "--json"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "RC 0" in proc.stdout and '"same": true' in proc.stdout
