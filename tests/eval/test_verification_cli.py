"""End to end: ``python -m eval.verification`` on tiny synthetic pair sets."""

import json
import pickle

import cv2
import numpy as np
import pytest
from PIL import Image

from eval import metrics
from eval.verification import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
N_IDS, PER_ID, SIZE = 6, 4, 48


def tiny_model(path, size=32, dim=8):
    """A random conv net saved as .keras: float (N, size, size, 3) -> (N, dim)."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(dim)(x)
    model = keras.Model(inp, out, name="tiny")
    model.save(path)
    return model


def make_dataset(root):
    """Aligned-looking crops: each identity a colour, each image that colour plus noise; an
    LFW-style pairs.txt (2 sets x 5 matched + 5 mismatched)."""
    rng = np.random.default_rng(0)
    names = [f"Person_{chr(65 + i)}" for i in range(N_IDS)]
    colours = rng.integers(0, 256, (N_IDS, 3))
    for i, name in enumerate(names):
        (root / name).mkdir(parents=True)
        for j in range(1, PER_ID + 1):
            img = colours[i] + rng.normal(0, 25, (SIZE, SIZE, 3))
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
                root / name / f"{name}_{j:04d}.png")
    # The LFW reader expects .jpg names: write JPEG copies under those names.
    for p in root.glob("*/*.png"):
        Image.open(p).save(p.with_suffix(".jpg"), quality=95)
    lines = ["2\t5"]
    for s in range(2):
        for k in range(5):
            i = (k + s) % N_IDS
            lines.append(f"{names[i]}\t{1 + s}\t{3 + (k % 2)}")
        for k in range(5):
            i, j = (k + s) % N_IDS, (k + s + 1 + k % 3) % N_IDS
            lines.append(f"{names[i]}\t{1 + k % PER_ID}\t{names[j]}\t{1 + (k + s) % PER_ID}")
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")
    return names


def reference_scores(model, root, pair_lines, size=32):
    """Scores computed independently: PIL resize, (x - 127.5) / 128, model, cosine."""
    def emb(name, n):
        img = Image.open(root / name / f"{name}_{int(n):04d}.jpg").convert("RGB")
        arr = np.asarray(img.resize((size, size), Image.BOX), np.float32)
        x = (arr - 127.5) / 128.0
        e = np.asarray(model(x[None], training=False))[0]
        return e / np.linalg.norm(e)
    scores, same = [], []
    for ln in pair_lines:
        p = ln.split("\t")
        a, b = (emb(p[0], p[1]), emb(p[0], p[2])) if len(p) == 3 else \
            (emb(p[0], p[1]), emb(p[2], p[3]))
        scores.append(float(a @ b))
        same.append(len(p) == 3)
    return np.array(scores), np.array(same)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("lfwtiny")
    make_dataset(root / "images")
    model = tiny_model(root / "tiny.keras")
    return root, model


def _run(args, capsys):
    rc = main(args + ["--quiet"])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.parametrize("all_plots", [
    False, pytest.param(True, marks=pytest.mark.slow)])  # t-SNE (sklearn) adds ~10 s
def test_keras_model_on_lfw_style_pairs_then_npz(data, tmp_path, capsys, all_plots):
    root, model = data
    out = tmp_path / "run"
    rc, stdout, _ = _run(["--model", str(root / "tiny.keras"), "--pairs",
                          str(root / "images" / "pairs.txt"), "--images", str(root / "images"),
                          "--aligned", "--out", str(out), "--save-embeddings",
                          str(tmp_path / "emb.npz"), "--grid-pairs", "4"]
                         + ([] if all_plots else ["--tsne-identities", "0"]), capsys)
    assert rc == 0, stdout
    assert "accuracy" in stdout
    rep = json.loads((out / "report.json").read_text())
    lines = (root / "images" / "pairs.txt").read_text().splitlines()[1:]
    ref_s, ref_y = reference_scores(model, root / "images", lines)
    got = np.load(out / "scores.npz")
    np.testing.assert_allclose(got["score"], ref_s, atol=0.02)
    ref_m = metrics.verification_metrics(got["score"], ref_y, folds=np.repeat([0, 1], 10))
    assert rep["metrics"]["accuracy_mean"] == pytest.approx(ref_m["accuracy_mean"])
    assert rep["metrics"]["auc"] == pytest.approx(ref_m["auc"])
    assert rep["metrics"]["n_folds"] == 2 and rep["protocol"]["folds"] == "pairs file blocks"
    assert rep["dataset"]["n_pairs"] == 20 and rep["failures"]["n_images_failed"] == 0
    assert rep["model"]["input_size"] == [32, 32]
    names = ["roc", "similarity_histogram", "angle_histogram", "false_positives",
             "false_negatives"]
    if all_plots:
        names += ["tsne", "identity_heatmap"]
    else:
        assert rep["plots"]["tsne"] == "skipped: --tsne-identities 0"
    for name in names:
        png = out / rep["plots"][name]
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 1000, name

    # The saved embeddings evaluate to the same numbers without the model.
    out2 = tmp_path / "run2"
    rc, _, _ = _run(["--model", str(tmp_path / "emb.npz"), "--pairs",
                     str(root / "images" / "pairs.txt"), "--images", str(root / "images"),
                     "--out", str(out2), "--no-plots"], capsys)
    assert rc == 0
    rep2 = json.loads((out2 / "report.json").read_text())
    assert rep2["metrics"] == rep["metrics"]
    assert rep2["model"]["kind"] == "npz" and rep2["failures"]["n_images_failed"] == 0


def test_flip_and_csv_and_bin(data, tmp_path, capsys):
    root, model = data
    imgs = root / "images"
    csv = tmp_path / "p.csv"
    rows = ["path1,path2,same"]
    for i in range(N_IDS):
        a = f"Person_{chr(65 + i)}"
        b = f"Person_{chr(65 + (i + 1) % N_IDS)}"
        rows += [f"{a}/{a}_0001.png,{a}/{a}_0002.png,1", f"{a}/{a}_0003.png,{b}/{b}_0001.png,0"]
    csv.write_text("\n".join(rows) + "\n")
    rc, _, err = _run(["--model", str(root / "tiny.keras"), "--pairs", str(csv), "--images",
                       str(imgs), "--aligned", "--flip", "--n-folds", "3", "--out",
                       str(tmp_path / "c"), "--no-plots", "--save-embeddings",
                       str(tmp_path / "e.npz")], capsys)
    assert rc == 0, err
    z = np.load(tmp_path / "e.npz")
    x = (np.asarray(Image.open(imgs / "Person_A" / "Person_A_0001.png").resize(
        (32, 32), Image.BOX), np.float32) - 127.5) / 128
    np.testing.assert_allclose(z["emb_flip"][0], np.asarray(model(x[None, :, ::-1]))[0],
                               atol=0.05)
    rep = json.loads((tmp_path / "c" / "report.json").read_text())
    assert rep["protocol"]["flip"] and rep["metrics"]["n_folds"] == 3

    # insightface .bin of the same crops (first 6 CSV pairs).
    encoded = []
    for ln in rows[1:7]:
        for rel in ln.split(",")[:2]:
            _, buf = cv2.imencode(".png", cv2.imread(str(imgs / rel)))
            encoded.append(buf.tobytes())
    bin_path = tmp_path / "tiny.bin"
    bin_path.write_bytes(pickle.dumps((encoded, [True, False] * 3), protocol=2))
    rc, _, err = _run(["--model", str(root / "tiny.keras"), "--pairs", str(bin_path),
                            "--n-folds", "2", "--out", str(tmp_path / "b"), "--grid-pairs", "2"],
                           capsys)
    assert rc == 0, err
    rep = json.loads((tmp_path / "b" / "report.json").read_text())
    assert rep["dataset"]["kind"] == "bin" and rep["dataset"]["n_pairs"] == 6
    assert rep["plots"]["tsne"] == "skipped: no identities known"
    assert (tmp_path / "b" / "false_positives.png").read_bytes()[:8] == PNG_MAGIC


def test_cli_errors(data, tmp_path, capsys):
    root, _ = data
    pairs_txt = str(root / "images" / "pairs.txt")
    model = str(root / "tiny.keras")
    rc, _, err = _run(["--model", model, "--pairs", pairs_txt, "--images",
                       str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and err.strip() == f"tfface-eval: error: image folder not found: " \
                                       f"{tmp_path / 'nowhere'}"
    bad = tmp_path / "pairs.txt"
    bad.write_text("10 300\nAlice 1\n")
    rc, _, err = _run(["--model", model, "--pairs", str(bad), "--images", str(root / "images"),
                       "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and "pairs.txt:2: expected" in err and len(err.strip().splitlines()) == 1
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"\0")
    rc, _, err = _run(["--model", str(onnx), "--pairs", pairs_txt, "--images",
                       str(root / "images"), "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and "unknown model file type '.onnx'" in err
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"not a zip")
    rc, _, err = _run(["--model", str(junk), "--pairs", pairs_txt, "--images",
                       str(root / "images"), "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and "cannot load Keras model" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_detection_path_on_shared_lfw_and_cache(shared_data, tmp_path, capsys):
    """Raw LFW photos through MTCNN + alignment; the second run reads every crop from cache."""
    from eval.pairs import read_lfw_pairs

    lfw = shared_data / "lfw"
    got = read_lfw_pairs(lfw / "pairs.txt", lfw / "images")
    chosen = got[:6] + got[300:306]
    csv = tmp_path / "p.csv"
    csv.write_text("".join(f"{a},{b},{int(s)}\n" for a, b, s in chosen))
    tiny_model(tmp_path / "m.keras", size=112)
    args = ["--model", str(tmp_path / "m.keras"), "--pairs", str(csv), "--n-folds", "2",
            "--cache", str(tmp_path / "cache"), "--no-plots"]
    rc, _, err = _run(args + ["--out", str(tmp_path / "r1")], capsys)
    assert rc == 0, err
    r1 = json.loads((tmp_path / "r1" / "report.json").read_text())
    n = r1["dataset"]["n_images"]
    assert r1["alignment"]["cache_hits"] == 0
    assert r1["alignment"]["counts"]["detected"] >= n - 1
    rc, _, err = _run(args + ["--out", str(tmp_path / "r2")], capsys)
    r2 = json.loads((tmp_path / "r2" / "report.json").read_text())
    assert rc == 0 and r2["alignment"]["cache_hits"] == n
    assert r2["metrics"] == r1["metrics"]
