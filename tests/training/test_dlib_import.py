"""dlib import: the serialization reader against dlib's documented encodings, the architecture
against dlib's layer arithmetic, the weight folding against a numpy reimplementation of dlib's
layers, and the shipped models against descriptors computed by dlib itself on committed chips
(tests/fixtures/dlib/references.json, written by training/dlib_reference.py with dlib 20.0.1)."""

import hashlib
import json
import os
from pathlib import Path

import keras
import numpy as np
import pytest

from tfface.core.image import load_image
from tfface.core.preprocess import normalize_face
from tfface.errors import ModelError
from training.dlib_format import DlibReader, anet_layer_list, read_dlib_resnet
from training.dlib_weights import conv_names, folded_convolutions
from training.models.dlib_resnet import DlibResNet, ZeroExtendAdd

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "saved_models" / "dlib_resnet"
FIXTURES = ROOT / "tests" / "fixtures" / "dlib"
TF_ONLY = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                             reason="TFLite conversion needs the TensorFlow backend")


# --- dlib's encodings, written here from dlib/serialize.h, independently of the reader ------

def enc_int(v):
    """dlib pack_int: control byte (size | 0x80 if negative), then |v| little-endian."""
    mag = abs(int(v))
    body = mag.to_bytes(max(1, (mag.bit_length() + 7) // 8), "little")
    return bytes([len(body) | (0x80 if v < 0 else 0)]) + body


def enc_float(mantissa, exponent):
    return enc_int(mantissa) + enc_int(exponent)


def enc_str(s):
    return enc_int(len(s)) + s.encode()


def enc_tensor(a):
    a = np.asarray(a, np.float32).reshape((1,) * (4 - np.ndim(a)) + np.shape(a))
    return enc_int(2) + b"".join(enc_int(d) for d in a.shape) + a.astype("<f4").tobytes()


@pytest.mark.parametrize("value", [0, 1, 2, 127, 255, 256, 300, 65535, 1 << 40, -1, -5,
                                   -300, -(1 << 33)])
def test_reader_integers(value):
    assert DlibReader(enc_int(value)).int() == value


def test_reader_known_bytes():
    # Hand-checked against pack_int: 300 = 0x012c -> size 2, bytes 2c 01; -5 -> 0x81 05.
    r = DlibReader(b"\x02\x2c\x01\x81\x05\x01\x00")
    assert (r.int(), r.int(), r.int()) == (300, -5, 0)


@pytest.mark.parametrize("mantissa,exponent,expected", [
    (1, -1, 0.5), (3, 4, 48.0), (-7, -3, -0.875), (0, 0, 0.0),
    (1, 32000, float("inf")), (1, 32001, float("-inf"))])
def test_reader_floats(mantissa, exponent, expected):
    assert DlibReader(enc_float(mantissa, exponent)).float() == expected


def test_reader_float_of_dlib_mean():
    # float_details of 122.782f: frexp mantissa scaled to 2**63, trailing zero bytes dropped.
    m, e = np.frexp(np.float32(122.782))
    mant, exp = int(m * 2.0**63), int(e) - 63
    while mant & 0xFF == 0:
        mant >>= 8
        exp += 8
    assert DlibReader(enc_float(mant, exp)).float() == np.float32(122.782)


def test_reader_string_bool_tensor():
    a = np.arange(6, dtype=np.float32).reshape(1, 2, 3, 1) / 7
    r = DlibReader(enc_str("con_4") + b"1" + b"0" + enc_tensor(a))
    assert r.string() == "con_4" and r.bool() is True and r.bool() is False
    np.testing.assert_array_equal(r.tensor(), a)


@pytest.mark.parametrize("data", [b"", b"\x02\x01", b"\x30", b"\x00"])
def test_reader_rejects_bad_bytes(data):
    with pytest.raises(ModelError, match="not a dlib"):
        DlibReader(data).int()


def test_read_rejects_wrong_files(tmp_path):
    bz = tmp_path / "m.dat"
    bz.write_bytes(b"BZh91AY&SY")
    with pytest.raises(ModelError, match="bunzip2"):
        read_dlib_resnet(bz)
    other = tmp_path / "other.dat"
    other.write_bytes(enc_int(1) + enc_str("loss_multiclass_log_"))
    with pytest.raises(ModelError, match="loss_metric"):
        read_dlib_resnet(other)
    with pytest.raises(ModelError, match="cannot read"):
        read_dlib_resnet(tmp_path / "missing.dat")


def test_layer_list_matches_anet_type():
    kinds = [k for k, _ in anet_layer_list()]
    # anet_type: 29 con + 29 affine; relus: stem + 2 per residual block (14 blocks).
    assert kinds.count("con") == 29 and kinds.count("affine") == 29
    assert kinds.count("relu") == 1 + 2 * 14
    assert kinds.count("add_prev") == 14 and kinds.count("avg_pool") == 4
    assert kinds[0] == "fc" and kinds[-1] == "con"


# --- architecture -------------------------------------------------------------------------

def dlib_param_count():
    """Conv kernels + biases and the 256x128 fc of anet_type (affines folded away)."""
    convs = [(3, 32, 7)]
    cin = 32
    for filters, blocks in ((32, 3), (64, 4), (128, 3), (256, 3), (256, 1)):
        for _ in range(blocks):
            convs += [(cin, filters, 3), (filters, filters, 3)]
            cin = filters
    return sum(k * k * a * b + b for a, b, k in convs) + 256 * 128


def test_architecture_params_and_shapes():
    model = DlibResNet()
    assert sum(int(np.prod(w.shape)) for w in model.weights) == dlib_param_count()
    assert len(conv_names()) == 29
    # dlib's tensor sizes: 150 -conv7/2-> 72 -max3/2-> 35 -> 17 -> 8 -> (3 | 4) -> (1 | 2).
    assert model.get_layer("stem_pool").output.shape[1] == 35
    assert model.get_layer("stage3_block1_add").output.shape[1:] == (8, 8, 128)
    assert model.get_layer("stage4_block1_add").output.shape[1:] == (4, 4, 256)
    assert model.get_layer("stage5_block1_add").output.shape[1:] == (2, 2, 256)
    assert model(np.zeros((2, 150, 150, 3), np.float32)).shape == (2, 128)


def test_config_round_trip_and_reload(tmp_path):
    model = DlibResNet(input_shape=(150, 150, 3))
    clone = DlibResNet.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    layer = ZeroExtendAdd(name="z")
    assert ZeroExtendAdd.from_config(layer.get_config()).name == "z"
    x = np.random.default_rng(0).normal(size=(1, 150, 150, 3)).astype(np.float32)
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.saving.load_model(path)
    np.testing.assert_allclose(again(x), model(x), atol=1e-5)


@pytest.mark.parametrize("bad", [{"embedding_size": 0}, {"input_shape": (32, 32, 3)},
                                 {"input_shape": (150, 150, 1)}])
def test_architecture_rejects_bad_options(bad):
    with pytest.raises(ValueError):
        DlibResNet(**bad)


def test_zero_extend_add_matches_dlib_add():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(2, 3, 3, 8)).astype(np.float32)
    b = rng.normal(size=(2, 4, 4, 5)).astype(np.float32)
    # dlib tt::add: sum where each operand exists, output the larger of each dimension.
    want = np.zeros((2, 4, 4, 8), np.float32)
    want[:, :3, :3, :8] += a
    want[:, :4, :4, :5] += b
    np.testing.assert_allclose(ZeroExtendAdd()([a, b]), want, atol=1e-6)


# --- weight folding against dlib's layer arithmetic in numpy --------------------------------

def dlib_conv(x_nchw, filters, bias, stride, pad):
    """dlib con_: cross-correlation, zero padding ``pad``, output 1 + (n + 2p - k) / s."""
    x = np.pad(x_nchw, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, _, h, w = x.shape
    o, _, k, _ = filters.shape
    oh, ow = 1 + (h - k) // stride, 1 + (w - k) // stride
    out = np.zeros((n, o, oh, ow), np.float64)
    for r in range(oh):
        for c in range(ow):
            win = x[:, :, r * stride:r * stride + k, c * stride:c * stride + k]
            out[:, :, r, c] = np.einsum("nchw,ochw->no", win, filters)
    return out + bias[None, :, None, None]


def test_folding_matches_dlib_input_conv_affine():
    rng = np.random.default_rng(2)
    mean = (122.782, 117.001, 104.298)
    f0, b0 = rng.normal(size=(4, 3, 7, 7)).astype(np.float32), rng.normal(size=4)
    g0, s0 = rng.uniform(0.5, 2, 4).astype(np.float32), rng.normal(size=4).astype(np.float32)
    f1, b1 = rng.normal(size=(5, 4, 3, 3)).astype(np.float32), rng.normal(size=5)
    g1, s1 = rng.uniform(0.5, 2, 5).astype(np.float32), rng.normal(size=5).astype(np.float32)
    net = {"input": {"mean_rgb": mean, "size": (21, 21)}, "layers": [
        {"type": "con", "filters": f0, "bias": b0.astype(np.float32), "padding": (0, 0)},
        {"type": "affine", "gamma": g0, "beta": s0},
        {"type": "con", "filters": f1, "bias": b1.astype(np.float32), "padding": (1, 1)},
        {"type": "affine", "gamma": g1, "beta": s1}]}
    img = rng.integers(0, 256, size=(1, 21, 21, 3)).astype(np.uint8)

    # dlib: input_rgb_image_sized (x - mean) / 256, NCHW; con 7x7/2 pad 0; affine; con 3x3
    # pad 1; affine.
    x = (img.astype(np.float64) - np.asarray(mean, np.float32)) / 256.0
    y = dlib_conv(x.transpose(0, 3, 1, 2), f0, b0, 2, 0)
    y = y * g0[None, :, None, None] + s0[None, :, None, None]
    y = dlib_conv(y, f1, b1, 1, 1)
    want = (y * g1[None, :, None, None] + s1[None, :, None, None]).transpose(0, 2, 3, 1)

    (k0, c0), (k1, c1) = folded_convolutions(net)
    conv0 = keras.layers.Conv2D(4, 7, strides=2, padding="valid")
    conv1 = keras.layers.Conv2D(5, 3, padding="same")
    conv0.build((None, 21, 21, 3))
    conv1.build((None, 8, 8, 4))
    conv0.set_weights([k0, c0])
    conv1.set_weights([k1, c1])
    got = conv1(conv0(normalize_face(img)))
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-3)


def test_folding_needs_an_affine_after_each_conv():
    net = {"input": {"mean_rgb": (0, 0, 0), "size": (9, 9)},
           "layers": [{"type": "con", "filters": np.zeros((1, 3, 3, 3), np.float32),
                       "bias": np.zeros(1, np.float32), "padding": (0, 0)},
                      {"type": "relu"}]}
    with pytest.raises(ModelError, match="affine"):
        folded_convolutions(net)


# --- parity with dlib itself on committed chips --------------------------------------------

def load_fixtures():
    index = json.loads((FIXTURES / "references.json").read_text())
    chips = np.stack([load_image(FIXTURES / e["chip"]) for e in index["chips"]])
    for chip, e in zip(chips, index["chips"]):
        # The references are dlib's output on these exact decoded pixels.
        assert hashlib.sha256(chip.tobytes()).hexdigest() == e["pixels_sha256"], e["chip"]
    return chips, np.asarray([e["descriptor"] for e in index["chips"]], np.float64)


def agreement(ours, ref):
    ours = np.asarray(ours, np.float64)
    cos = np.sum(ours * ref, 1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref, axis=1)
    return np.abs(ours - ref).max(), cos.min()


def test_shipped_keras_matches_dlib():
    chips, ref = load_fixtures()
    import training.models.dlib_resnet  # noqa: F401  (registers the layers)

    model = keras.saving.load_model(SHIPPED / "dlib_resnet.keras", compile=False)
    max_abs, cos = agreement(model.predict(normalize_face(chips), verbose=0), ref)
    assert max_abs < 2e-5 and cos > 0.999999, (max_abs, cos)
    # Different people's chips are far apart in dlib's metric: the comparison can fail.
    assert np.linalg.norm(ref[0] - ref[1]) > 0.3


@TF_ONLY
@pytest.mark.parametrize("variant,min_cos", [("float32", 0.99999), ("float16", 0.999)])
def test_shipped_tflite_matches_dlib(variant, min_cos):
    from tflite.embedder import TFLiteEmbedder

    path = SHIPPED / f"dlib_resnet_{variant}.tflite"
    if not path.is_file():
        pytest.skip(f"{path.name} not shipped")
    chips, ref = load_fixtures()
    emb = TFLiteEmbedder(path)(chips)
    unit = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    _, cos = agreement(emb, unit)
    assert cos > min_cos, cos
    ops = {d["op_name"] for d in emb_ops(path)}
    assert not ops & {"VAR_HANDLE", "READ_VARIABLE", "FlexConv2D"}, ops


def emb_ops(path):
    from tflite.interpreter import TFLiteModel

    model = TFLiteModel(path)
    return model.interpreter._get_ops_details()


def test_cli_reports_missing_dat(tmp_path, capsys):
    from training.import_dlib import main

    rc = main(["--dat", str(tmp_path / "nope.dat"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "not found" in err[0]


def dat_file():
    """dlib's .dat: $TFFACE_DLIB_DAT, else the installed face_recognition_models package's."""
    if os.environ.get("TFFACE_DLIB_DAT"):
        return Path(os.environ["TFFACE_DLIB_DAT"])
    try:
        import face_recognition_models
    except ImportError:
        pytest.skip("face_recognition_models (dlib's .dat) is not installed")
    return Path(face_recognition_models.face_recognition_model_location())


@pytest.mark.slow
def test_import_from_dat_matches_dlib(tmp_path):
    from training.import_dlib import main

    rc = main(["--dat", str(dat_file()), "--out", str(tmp_path), "--variants", "float32"])
    assert rc == 0
    card = json.loads((tmp_path / "dlib_resnet.json").read_text())
    assert card["parity"]["dlib"]["keras_float32"]["max_abs_diff"] < 2e-5
    assert card["parity"]["dlib"]["tflite_float32"]["cosine_min"] > 0.99999
    assert card["input"]["dlib_preprocessing"]["mean_rgb"] == pytest.approx(
        [122.782, 117.001, 104.298], abs=1e-4)


@pytest.mark.slow
def test_template_reproduces_dlib_chip(shared_data, mtcnn_detector):
    """MTCNN + the card's template on the fixtures' source photos gives chips whose
    descriptors agree with dlib's on its own chips."""
    import training.models.dlib_resnet  # noqa: F401
    from tfface.core.align import warp_face

    card = json.loads((SHIPPED / "dlib_resnet.json").read_text())
    template = np.asarray(card["alignment"]["template"])
    index = json.loads((FIXTURES / "references.json").read_text())
    model = keras.saving.load_model(SHIPPED / "dlib_resnet.keras", compile=False)
    cos = []
    for e in index["chips"]:
        face = mtcnn_detector.detect_one(shared_data / e["source"], policy="largest")
        chip = warp_face(load_image(shared_data / e["source"]), face.landmarks, 150,
                         template=template)
        ours = model.predict(normalize_face(chip[None]), verbose=0)[0]
        ref = np.asarray(e["descriptor"])
        cos.append(ours @ ref / np.linalg.norm(ours) / np.linalg.norm(ref))
    assert np.mean(cos) > 0.97, cos

