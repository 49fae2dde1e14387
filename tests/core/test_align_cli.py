"""tfface-align on a messy folder: bad files listed, the rest aligned, resumable."""

import csv
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np

from tests.conftest import ROOT
from tfface.cli.align import main
from tfface.core.image import load_image

SAMPLES = sorted((ROOT / "samples").glob("*.jpg"))


def make_tree(root, copies=1):
    for person in ("a", "b"):
        d = root / f"person_{person}"
        d.mkdir(parents=True)
        for s in SAMPLES:
            if s.name.startswith(f"person_{person}"):
                for c in range(copies):
                    shutil.copy(s, d / f"{s.stem}_{c}.jpg")
    (root / "person_a" / "corrupt.jpg").write_bytes(SAMPLES[0].read_bytes()[:800])
    (root / "person_a" / "empty.jpg").write_bytes(b"")
    (root / "person_b" / "notes.txt").write_text("not an image")
    (root / "person_b" / "blank.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)


def read_failures(dst):
    with open(dst / "failures.csv", newline="") as fh:
        return {row["path"]: row["reason"] for row in csv.DictReader(fh)}


def test_messy_folder(tmp_path, capsys):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src)
    assert main([str(src), str(dst)]) == 0
    crops = sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*.png"))
    assert crops == ["person_a/person_a_1_0.png", "person_a/person_a_2_0.png",
                     "person_b/person_b_1_0.png", "person_b/person_b_2_0.png"]
    for c in crops:
        assert load_image(dst / c).shape == (112, 112, 3)
    fails = read_failures(dst)
    assert set(fails) == {"person_a/corrupt.jpg", "person_a/empty.jpg",
                          "person_b/notes.txt", "person_b/blank.png"}
    assert "empty" in fails["person_a/empty.jpg"]
    out = capsys.readouterr().out
    assert "aligned 4" in out and "failed 4" in out

    # A second run skips everything already done.
    assert main([str(src), str(dst), "--size", "112"]) == 0
    assert "skipped 4" in capsys.readouterr().out


def test_size_format_and_errors(tmp_path, capsys):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src)
    assert main([str(src), str(dst), "--size", "160", "--format", "jpg"]) == 0
    got = load_image(dst / "person_b" / "person_b_1_0.jpg")
    assert got.shape == (160, 160, 3)
    assert main([str(tmp_path / "nope"), str(dst)]) == 2
    assert "source folder not found" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.jpg").write_bytes(b"junk")
    assert main([str(bad), str(tmp_path / "bad_out")]) == 2
    assert "no image could be aligned" in capsys.readouterr().err


def test_killed_run_resumes_to_same_files(tmp_path):
    src = tmp_path / "src"
    make_tree(src, copies=8)  # 32 photos
    ref_dst, dst = tmp_path / "ref", tmp_path / "dst"
    assert main([str(src), str(ref_dst)]) == 0
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "tfface.cli.align", str(src), str(dst)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(dst.rglob("*.png"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = len(list(dst.rglob("*.png")))
    assert 3 <= partial < 32, "the run should have been killed midway"
    # A stale temp file as a kill during a write leaves it.
    (dst / "person_a" / "person_a_1_0.png.part-999").write_bytes(b"half")
    assert main([str(src), str(dst)]) == 0
    got = sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*") if p.is_file())
    want = sorted(p.relative_to(ref_dst).as_posix() for p in ref_dst.rglob("*") if p.is_file())
    assert got == want
    for rel in want:
        if rel.endswith(".png"):
            np.testing.assert_array_equal(load_image(dst / rel), load_image(ref_dst / rel))


def test_policy_all_writes_every_face(tmp_path):
    import cv2

    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    a, b = load_image(SAMPLES[0]), load_image(SAMPLES[2])
    canvas = np.concatenate([a, b], axis=1)
    cv2.imwrite(str(src / "two.jpg"), canvas[..., ::-1])
    assert main([str(src), str(dst), "--policy", "all"]) == 0
    assert sorted(p.name for p in dst.glob("*.png")) == ["two_0.png", "two_1.png"]


def test_two_workers_same_result(tmp_path):
    src = tmp_path / "src"
    make_tree(src)
    assert main([str(src), str(tmp_path / "one")]) == 0
    assert main([str(src), str(tmp_path / "two"), "--workers", "2"]) == 0
    one = sorted(p.relative_to(tmp_path / "one").as_posix() for p in (tmp_path / "one").rglob("*"))
    two = sorted(p.relative_to(tmp_path / "two").as_posix() for p in (tmp_path / "two").rglob("*"))
    assert one == two
    assert read_failures(tmp_path / "two") == read_failures(tmp_path / "one")
