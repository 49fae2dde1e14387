"""tfface-enroll, tfface-identify and tfface-video end to end on the sample photos."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import ROOT
from tfface.cli.enroll import main as enroll
from tfface.cli.identify import main as identify
from tfface.cli.video import main as video
from tfface.core.image import load_image

S = {n: str(ROOT / "samples" / f"{n}.jpg") for n in
     ("person_a_1", "person_a_2", "person_b_1", "person_b_2")}


@pytest.fixture(scope="module")
def model(exported):
    return str(exported / "out" / "tiny_float32.tflite")


def test_enroll_list_rename_remove(model, tmp_path, capsys):
    db = str(tmp_path / "bank.db")
    assert enroll(["--db", db, "--model", model, "ann", S["person_a_1"], S["person_a_2"]]) == 0
    folder = tmp_path / "people"
    (folder / "bob").mkdir(parents=True)
    (folder / "bob" / "1.jpg").write_bytes(Path(S["person_b_1"]).read_bytes())
    (folder / "bob" / "broken.jpg").write_bytes(b"nope")
    assert enroll(["--db", db, "--model", model, "--folder", str(folder)]) == 0
    captured = capsys.readouterr()
    assert "skipped" in captured.err and "broken.jpg" in captured.err
    assert enroll(["--db", db, "--list"]) == 0
    assert capsys.readouterr().out.split() == ["ann", "2", "bob", "1"]
    assert enroll(["--db", db, "--rename", "bob", "robert"]) == 0
    assert enroll(["--db", db, "--remove", "ann"]) == 0
    capsys.readouterr()
    assert enroll(["--db", db, "--list"]) == 0
    assert capsys.readouterr().out.split() == ["robert", "1"]
    assert enroll(["--db", db, "--remove", "ann"]) == 2
    assert "no identity" in capsys.readouterr().err


def test_identify_and_model_mismatch(model, exported, tmp_path, capsys):
    db = str(tmp_path / "bank.db")
    assert enroll(["--db", db, "--model", model, "bob", S["person_b_1"]]) == 0
    capsys.readouterr()
    out_dir = tmp_path / "ann"
    assert identify(["--db", db, "--model", model, "--threshold", "0.99", "--json",
                     "--annotate", str(out_dir), S["person_b_1"],
                     str(tmp_path / "missing.jpg")]) == 0
    res = json.loads(capsys.readouterr().out)["results"]
    face = res[0]["faces"][0]
    assert face["name"] == "bob" and face["similarity"] > 0.999
    assert load_image(res[0]["annotated"]).shape == load_image(S["person_b_1"]).shape
    assert "error" in res[1]
    other = str(exported / "out" / "tiny_int8.tflite")
    assert identify(["--db", db, "--model", other, S["person_b_1"]]) == 2
    assert "model" in capsys.readouterr().err


def test_video_tracks_and_names(model, tmp_path, capsys):
    db = str(tmp_path / "bank.db")
    assert enroll(["--db", db, "--model", model, "bob", S["person_b_1"]]) == 0
    face = cv2.cvtColor(load_image(S["person_b_1"]), cv2.COLOR_RGB2BGR)
    path = str(tmp_path / "pan.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10, (480, 320))
    offsets = [4 * i for i in range(24)]
    for dx in offsets:
        frame = np.full((320, 480, 3), 60, np.uint8)
        frame[35:285, 20 + dx:270 + dx] = face
        writer.write(frame)
    writer.release()
    capsys.readouterr()
    out = str(tmp_path / "annotated.avi")
    assert video(["--db", db, "--model", model, "--threshold", "0.9", "--headless",
                  "--detect-every", "6", "--out", out, path]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 24
    assert sum(line["detected"] for line in lines) == 4
    first = lines[0]["faces"][0]["box"]
    for line, dx in zip(lines, offsets):
        assert len(line["faces"]) == 1 and line["faces"][0]["name"] == "bob"
        box = line["faces"][0]["box"]
        # the tracked box moves with the face (within a few pixels of the true shift)
        assert abs((box[0] + box[2]) / 2 - (first[0] + first[2]) / 2 - dx) < 6
    cap = cv2.VideoCapture(out)
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 24
    assert video(["--db", db, "--model", model, str(tmp_path / "none.avi")]) == 2
