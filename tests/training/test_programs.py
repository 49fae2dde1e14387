"""The three training programs, run for a few steps on tiny generated data: the loss falls on
a separable toy set, the outputs (config, logs, checkpoints, model + card) are there, the
exported model reproduces the trained backbone, and bad input gives one error line."""

import csv
import json
from pathlib import Path

import keras
import numpy as np
import pytest

from tests.training.toy import write_identities, write_teacher
from tfface.core.preprocess import normalize_face, preprocessing_card
from training import arcface, distill, triplet

COMMON = ["--backbone", "mobileid", "--input-size", "32", "--warmup-epochs", "0",
          "--no-progress", "--log-every", "1", "--checkpoint-every", "1000", "--no-augment"]


def step_losses(out, tag="train/loss"):
    with open(Path(out) / "logs" / "scalars.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["tag"] == tag]
    return np.array([float(r["value"]) for r in rows])


def assert_falls(losses, k=4):
    assert len(losses) >= 2 * k, losses
    first, last = losses[:k].mean(), losses[-k:].mean()
    assert np.all(np.isfinite(losses))
    assert last < 0.8 * first, f"loss did not fall: first {first:.4f}, last {last:.4f}"


def check_outputs(out, program, steps, data):
    out = Path(out)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["program"] == program and cfg["total_steps"] == steps
    card = json.loads((out / "embedding.json").read_text())
    assert card["program"] == program and card["steps"] == steps
    assert card["preprocessing"] == preprocessing_card()
    assert card["input_size"] == [32, 32] and card["data"]["source"] == str(data)
    assert (out / "checkpoints" / f"step-{steps:08d}" / "state.json").is_file()
    model = keras.saving.load_model(out / "embedding.keras")
    assert model.output_shape[-1] == card["embedding_size"]
    return model, card


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_identities(tmp_path_factory.mktemp("toy"), n_ids=3, per_id=16, size=32)


def write_pairs_csv(root, path):
    """20 pairs over the toy identities: 10 same-identity, 10 different."""
    rows = ["path1,path2,same"]
    for i in range(10):
        c = i % 3
        rows.append(f"id{c:02d}/{i:03d}.jpg,id{c:02d}/{i + 1:03d}.jpg,1")
        rows.append(f"id{c:02d}/{i:03d}.jpg,id{(c + 1) % 3:02d}/{i:03d}.jpg,0")
    Path(path).write_text("\n".join(rows) + "\n")
    return str(path)


@pytest.mark.parametrize("head", ["arcface", "softmax"])
def test_arcface_loss_falls(toy, tmp_path, head):
    out = tmp_path / "run"
    steps = 18
    pairs = write_pairs_csv(toy, tmp_path / "pairs.csv")
    argv = ["--data", toy, "--out", str(out), "--batch-size", "12", "--steps", str(steps),
            "--head", head, "--scale", "8", "--lr", "0.05", "--pairs", pairs,
            "--pairs-images", toy, *COMMON]
    assert arcface.main(argv) == 0
    # The verification callback ran at each epoch end on the pairs (eval code) and its
    # accuracy was logged; colour-separable identities are told apart after training.
    val = step_losses(out, "epoch/val_accuracy")
    assert len(val) == steps // 4 + 1 and val[-1] >= 0.9
    assert_falls(step_losses(out))
    model, card = check_outputs(out, "arcface", steps, toy)
    assert card["num_classes"] == 3 and card["head"] == head
    # Logged after each step t = 1..18: the LR of the next update, 0.05 * (1 + cos(pi t/18))/2.
    t = np.arange(1, steps + 1)
    np.testing.assert_allclose(step_losses(out, "train/lr"),
                               0.05 * 0.5 * (1 + np.cos(np.pi * t / steps)), rtol=1e-4,
                               atol=1e-7)
    # The saved embedding model is the trained backbone: same outputs on the same images.
    x = normalize_face(np.full((2, 32, 32, 3), 128, np.uint8))
    emb = keras.ops.convert_to_numpy(model(x))
    assert emb.shape == (2, 128) and np.all(np.isfinite(emb))


def test_arcface_multihead_runs(toy, tmp_path):
    out = tmp_path / "run"
    argv = ["--data", toy, "--out", str(out), "--batch-size", "12", "--steps", "4",
            "--head", "multihead", "--num-heads", "2", "--scale", "8", *COMMON]
    assert arcface.main(argv) == 0
    metrics = json.loads((out / "embedding.json").read_text())["final_metrics"]
    assert np.isfinite(metrics["loss"])
    assert len([k for k in metrics if "accuracy" in k]) == 2  # one per sub-head


def test_triplet_loss_falls(tmp_path):
    data = write_identities(tmp_path / "data", n_ids=4, per_id=8, size=32, noise=25)
    out = tmp_path / "run"
    steps = 16
    argv = ["--data", data, "--out", str(out), "--batch-size", "8", "--images-per-identity",
            "4", "--steps", str(steps), "--mining", "batch_hard", "--lr", "0.003",
            "--embedding-size", "16", *COMMON]
    assert triplet.main(argv) == 0
    assert_falls(step_losses(out))
    check_outputs(out, "triplet", steps, data)


def test_distill_loss_falls_and_saves_mean(tmp_path):
    root = tmp_path / "data"
    write_identities(root / "set", n_ids=3, per_id=12, size=32)
    write_teacher(str(root), "set", str(root / "teacher.npz"), dim=16)
    out = tmp_path / "run"
    steps = 18
    argv = ["--data", str(root), "--teacher", str(root / "teacher.npz"), "--out", str(out),
            "--batch-size", "12", "--steps", str(steps), "--embedding-size", "8",
            "--lr", "0.01", *COMMON]
    assert distill.main(argv) == 0
    assert_falls(step_losses(out))
    check_outputs(out, "distill", steps, root)
    # The centring mean is the mean of the training targets (both orientations).
    with np.load(root / "teacher.npz") as z:
        expected = np.concatenate([z["emb"], z["emb_flip"]]).mean(axis=0)
    saved = json.loads((out / "teacher_mean.json").read_text())
    np.testing.assert_allclose(saved["mean"], expected, rtol=1e-5, atol=1e-5)
    # 8-d student, 16-d teacher: a projection was learnt and saved.
    assert np.load(out / "projection.npy").shape == (8, 16)


def test_init_weights_starts_from_an_earlier_model(toy, tmp_path, capsys):
    base = ["--data", toy, "--batch-size", "12", "--scale", "8", *COMMON]
    first = tmp_path / "first"
    assert arcface.main([*base, "--out", str(first), "--steps", "3", "--lr", "0.05"]) == 0
    source = keras.saving.load_model(first / "embedding.keras")
    # A 1-step run at a vanishing LR from --init-weights keeps the earlier model's weights;
    # the same run from a fresh initialisation does not.
    runs = {}
    for name, extra in (("init", ["--init-weights", str(first / "embedding.keras")]),
                        ("fresh", [])):
        out = tmp_path / name
        assert arcface.main([*base, "--out", str(out), "--steps", "1", "--lr", "1e-12",
                             "--seed", "7", *extra]) == 0
        runs[name] = keras.saving.load_model(out / "embedding.keras")

    def kernels(model):
        return [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]

    for a, b in zip(kernels(runs["init"]), kernels(source)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert max(np.abs(a - b).max() for a, b in zip(kernels(runs["fresh"]), kernels(source))) \
        > 1e-2
    # The card tells where the run started: the earlier run's command, steps and wall time,
    # and the total training time of both.
    first_card = json.loads((first / "embedding.json").read_text())
    card = json.loads((tmp_path / "init" / "embedding.json").read_text())
    start = card["initialized_from"]
    assert start["file"] == str((first / "embedding.keras").resolve())
    assert start["steps"] == 3 and start["command_line"] == first_card["command_line"]
    assert card["total_train_seconds"] == pytest.approx(
        card["train_seconds"] + first_card["train_seconds"], abs=0.02)
    assert "initialized_from" not in json.loads((tmp_path / "fresh" / "embedding.json")
                                                .read_text())
    # A model of another shape is refused with one line naming the option.
    capsys.readouterr()
    code = arcface.main([*base, "--out", str(tmp_path / "bad"), "--steps", "1",
                         "--embedding-size", "16",
                         "--init-weights", str(first / "embedding.keras")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--init-weights" in err[0] and "do not fit" in err[0]
    assert arcface.main([*base, "--out", str(tmp_path / "bad2"), "--steps", "1",
                         "--init-weights", str(tmp_path / "none.keras")]) == 2


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as exc:
        arcface.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--data", "--out", "--head", "--pairs", "--pairs-images", "--mixed-precision",
                 "--checkpoint-every", "--lr-schedule", "--optimizer", "--weight-decay",
                 "--backend", "--steps", "--epochs"):
        assert flag in text


def test_bad_data_is_one_error_line(tmp_path, capsys):
    code = arcface.main(["--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    missing = str(tmp_path / "missing")
    assert err == [f"python -m training.arcface: error: --data {missing!r} does not exist"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert triplet.main(["--data", str(empty), "--out", str(tmp_path / "o2")]) == 2
    assert "Traceback" not in capsys.readouterr().err
