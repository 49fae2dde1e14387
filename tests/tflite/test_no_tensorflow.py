"""The edge runtime runs without TensorFlow: in a fresh interpreter where importing
tensorflow, keras or tf_keras fails, every tflite module and tfface.core imports and the TFLite
MTCNN finds a face."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import importlib, json, pkgutil, sys

BLOCKED = {"tensorflow", "keras", "tf_keras"}

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"blocked in this test: {name}")
        return None

sys.meta_path.insert(0, Blocker())
report = {}
try:
    import tensorflow  # noqa: F401  the blocker must work, or the test proves nothing
    report["blocker_works"] = False
except ImportError:
    report["blocker_works"] = True

import tflite, tfface.core
modules = []
for pkg in (tflite, tfface.core):
    for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        importlib.import_module(info.name)
        modules.append(info.name)
import tfface.errors  # noqa: F401
report["modules"] = modules

from tflite.interpreter import interpreter_class
from tflite.mtcnn import TFLiteMTCNNDetector

report["backend"] = interpreter_class()[1]
faces = TFLiteMTCNNDetector(num_threads=1).detect(sys.argv[1])
report["faces"] = len(faces)
report["loaded"] = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
print(json.dumps(report))
"""


def test_tflite_runtime_imports_no_tensorflow(fixtures_dir):
    photo = fixtures_dir / "celeba_7201_001085.jpg"
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(photo)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["blocker_works"]
    assert {"tflite.interpreter", "tflite.mtcnn", "tflite.nms",
            "tfface.core.detection"} <= set(report["modules"])
    assert report["backend"] in {"ai_edge_litert.interpreter", "tflite_runtime.interpreter"}
    assert report["faces"] == 1
    assert report["loaded"] == []
