"""On-the-fly distillation targets from a teacher model (the shipped dlib ResNet int8)."""

import json

import numpy as np
import pytest

from tests.conftest import ROOT
from tfface.core.align import warp_face
from tfface.core.image import load_image, save_image_atomic
from tfface.core.preprocess import normalize_face
from tfface.core.template import face_template, transform_points
from tfface.model_card import card_template, read_card

TEACHER = ROOT / "saved_models" / "dlib_resnet" / "dlib_resnet_int8.tflite"
pytestmark = pytest.mark.skipif(not TEACHER.is_file(), reason="shipped dlib model missing")


def test_warp_is_least_squares_similarity_between_templates():
    from training.teacher_model import OnTheFlyTeacher

    t = OnTheFlyTeacher(TEACHER, student_size=112)
    src = face_template(112)
    dst = np.asarray(card_template(read_card(TEACHER)), np.float64)
    # Independent reference: solve the 4-parameter similarity by linear least squares.
    a = np.zeros((10, 4))
    a[0::2] = np.c_[src[:, 0], -src[:, 1], np.ones(5), np.zeros(5)]
    a[1::2] = np.c_[src[:, 1], src[:, 0], np.zeros(5), np.ones(5)]
    p, *_ = np.linalg.lstsq(a, dst.reshape(-1), rcond=None)
    ref = np.array([[p[0], -p[1], p[2]], [p[1], p[0], p[3]]])
    np.testing.assert_allclose(t.matrix, ref, atol=1e-6)
    # The two templates frame the face alike: the fit leaves only small residuals.
    assert np.abs(transform_points(t.matrix, src) - dst).max() < 5.0  # px of a 150 crop
    assert t.size == (150, 150) and t.dim == 128


def test_targets_match_teacher_on_its_own_crop(mtcnn_detector):
    """The teacher's embedding of the warped student crop equals (up to the black border) its
    embedding of the crop aligned directly from the photo with its own template."""
    from training.teacher_model import OnTheFlyTeacher

    t = OnTheFlyTeacher(TEACHER, student_size=112)
    template = np.asarray(card_template(t.embedder.card))
    for name in ("person_a_1.jpg", "person_b_2.jpg"):
        rgb = load_image(ROOT / "samples" / name)
        lm = mtcnn_detector.detect_one(rgb).landmarks
        student = warp_face(rgb, lm, 112)
        direct = t.embedder(warp_face(rgb, lm, 150, template=template)[None])[0]
        got = t(normalize_face(student[None]))[0]
        assert float(np.dot(got, direct)) > 0.97, name


def test_distill_with_teacher_model_runs(tmp_path):
    from training.distill import main

    data = tmp_path / "faces"
    for i, name in enumerate(sorted((ROOT / "samples").glob("*.jpg"))):
        crop = load_image(name)[69:181, 69:181]  # 112x112 centre of the 250x250 photo
        for k in range(4):
            save_image_atomic(data / f"img{i}_{k}.png", np.roll(crop, k, axis=1))
    out = tmp_path / "run"
    rc = main(["--data", str(data), "--teacher-model", str(TEACHER), "--out", str(out),
               "--backbone", "mobileid", "--batch-size", "8", "--steps", "3",
               "--checkpoint-every", "3", "--no-progress"])
    assert rc == 0
    card = json.loads((out / "embedding.json").read_text())
    assert card["data"]["teacher_model"] == str(TEACHER)
    assert card["data"]["targets"].startswith("on the fly")
    mean = json.loads((out / "teacher_mean.json").read_text())["mean"]
    assert len(mean) == 128


def _faces(tmp_path):
    data = tmp_path / "faces"
    for i, name in enumerate(sorted((ROOT / "samples").glob("*.jpg"))):
        crop = load_image(name)[69:181, 69:181]
        for k in range(4):
            save_image_atomic(data / f"img{i}_{k}.png", np.roll(crop, k, axis=1))
    return data


def test_mixup_targets_are_the_teachers_embedding_of_the_blend(tmp_path):
    """With --mixup the model trains on blends, and each target is the teacher's (centred)
    embedding of exactly the blended pixels the student gets."""
    from training.config import DistillConfig
    from training.distill import on_the_fly_setup
    from training.teacher_model import OnTheFlyTeacher

    data = _faces(tmp_path)
    cfg = DistillConfig(data=str(data), out=str(tmp_path / "o"), teacher_model=str(TEACHER),
                        mixup=1.0, mixup_prob=1.0, batch_size=8, augmentation="strong")
    *_, stats, pipeline, info, to_xy = on_the_fly_setup(cfg, 112, with_ce=False)
    assert info["mixup"] == {"alpha": 1.0, "prob": 1.0}
    images, labels = next(pipeline.numpy_batches(epochs=1))
    x, y = to_xy(images, labels)
    assert x["image"].shape == images.shape
    blended = ~np.all(np.isclose(x["image"], images), axis=(1, 2, 3))
    assert blended.sum() >= 4
    teacher = OnTheFlyTeacher(TEACHER, student_size=112)
    want = teacher(x["image"]) - stats.mean
    np.testing.assert_allclose(y["distill"], want, atol=1e-5)


def test_distill_strong_augmentation_and_mixup_run(tmp_path):
    from training.distill import main

    out = tmp_path / "run"
    rc = main(["--data", str(_faces(tmp_path)), "--teacher-model", str(TEACHER), "--out",
               str(out), "--backbone", "mobileid", "--batch-size", "8", "--steps", "2",
               "--checkpoint-every", "2", "--no-progress", "--augmentation", "strong",
               "--mixup", "0.4"])
    assert rc == 0
    card = json.loads((out / "embedding.json").read_text())
    assert card["data"]["mixup"] == {"alpha": 0.4, "prob": 0.5}
    assert card["data"]["augment"]["rotation"] > 0


def test_mixup_needs_a_teacher_model(tmp_path, capsys):
    from training.distill import main

    rc = main(["--data", str(tmp_path), "--out", str(tmp_path / "o"), "--mixup", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "--mixup needs --teacher-model" in err[-1] and "Traceback" not in err[-1]
