"""Embedders: Keras and TFLite (float and int8) models, flip, .npz look-up, file-type errors."""

import warnings

import numpy as np
import pytest

from eval import embedders
from tfface.errors import DataError, ModelError


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import keras
    import tensorflow as tf

    root = tmp_path_factory.mktemp("models")
    keras.utils.set_random_seed(1)
    inp = keras.Input((24, 24, 3))
    x = keras.layers.Conv2D(6, 3, strides=2, activation="relu")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(8)(x))
    model.save(root / "m.keras")
    (root / "m.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    conv.representative_dataset = lambda: (
        [rng.uniform(-1, 1, (1, 24, 24, 3)).astype(np.float32)] for _ in range(16))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    with warnings.catch_warnings():  # the converter's note on input statistics
        warnings.simplefilter("ignore", UserWarning)
        (root / "m_int8.tflite").write_bytes(conv.convert())
    return root, model


def faces(n=5, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 24, 24, 3), dtype=np.uint8)


def reference(model, x):
    return np.asarray(model((x.astype(np.float32) - 127.5) / 128.0, training=False))


def test_keras_embedder_and_flip(models):
    root, model = models
    emb = embedders.load_embedder(root / "m.keras")
    assert emb.input_size == (24, 24) and emb.describe()["parameters"] == model.count_params()
    x = faces(7)
    e, ef = embedders.embed_faces(emb, x, batch_size=3, flip=True, progress=False)
    np.testing.assert_allclose(e, reference(model, x), atol=1e-5)
    np.testing.assert_allclose(ef, reference(model, x[:, :, ::-1]), atol=1e-5)
    final = embedders.combine(e, ef)
    ref = reference(model, x) + reference(model, x[:, :, ::-1])
    np.testing.assert_allclose(final, ref / np.linalg.norm(ref, axis=1, keepdims=True),
                               atol=1e-5)


def test_tflite_float_and_int8(models):
    root, model = models
    x = faces(6)
    ref = reference(model, x)
    f32 = embedders.load_embedder(root / "m.tflite", num_threads=1)
    np.testing.assert_allclose(f32(x), ref, atol=1e-4)
    q = embedders.load_embedder(root / "m_int8.tflite", num_threads=2)
    d = q.describe()
    assert d["input_dtype"] == "int8" and d["input_quantization"][0] > 0
    got = embedders.l2_normalize(q(x))
    cos = np.sum(got * embedders.l2_normalize(ref), axis=1)
    assert cos.min() > 0.95  # int8 rounding only; a wrong scale/zero point fails this
    # batch of 1 as well as several, and the face-by-face path of fixed-batch models
    np.testing.assert_allclose(q(x[:1]), q(x)[:1], atol=1e-6)
    f32.dynamic_batch = False
    np.testing.assert_allclose(f32(x), ref, atol=1e-4)


def test_model_kind_errors(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"x")
    with pytest.raises(ModelError, match="unknown model file type '.onnx'"):
        embedders.model_kind(tmp_path / "m.onnx")
    with pytest.raises(ModelError, match="model file not found"):
        embedders.model_kind(tmp_path / "none.tflite")
    (tmp_path / "bad.tflite").write_bytes(b"not a flatbuffer")
    with pytest.raises(ModelError, match="not a TFLite model"):
        embedders.load_embedder(tmp_path / "bad.tflite")


def test_lookup_embeddings(tmp_path):
    emb = np.arange(12, dtype=np.float32).reshape(4, 3)
    stored = ["lfw/images/A/A_0001.jpg", "/abs/B/B_0001.jpg", "C/C_0002.jpg", "D/D_0001.jpg"]
    np.savez(tmp_path / "e.npz", path=np.array(stored), emb=emb, emb_flip=-emb)
    root = str(tmp_path / "data")
    keys = [f"{root}/lfw/images/A/A_0001.jpg", "/abs/B/B_0001.jpg", "/other/C/C_0002.jpg"]
    e, ef = embedders.lookup_embeddings(tmp_path / "e.npz", keys, images_root=root, flip=True)
    np.testing.assert_array_equal(e, emb[:3])
    np.testing.assert_array_equal(ef, -emb[:3])
    _, _, status = embedders.lookup_embeddings(tmp_path / "e.npz", keys, root, with_status=True)
    assert status is None
    np.savez(tmp_path / "s.npz", path=np.array(stored), emb=emb, detected=np.array([1, 0, 1, 1]))
    _, _, status = embedders.lookup_embeddings(tmp_path / "s.npz", keys, root, with_status=True)
    assert status == ["detected", "no_face", "detected"]
    with pytest.raises(DataError, match="no embedding for 1 of 1 images"):
        embedders.lookup_embeddings(tmp_path / "e.npz", ["/x/E/E_0001.jpg"])
    np.savez(tmp_path / "n.npz", path=np.array(stored), emb=emb)
    with pytest.raises(DataError, match="no 'emb_flip'"):
        embedders.lookup_embeddings(tmp_path / "n.npz", keys[:1], flip=True)
    np.savez(tmp_path / "w.npz", emb=emb)
    with pytest.raises(DataError, match="expected arrays 'path' and 'emb'"):
        embedders.lookup_embeddings(tmp_path / "w.npz", keys[:1])


def test_speed_times_each_tflite_thread_count(models):
    from eval.speed import benchmark

    root, _ = models
    res = benchmark([root / "m.tflite", root / "m.keras"], threads=(1, 2), runs=3, warmup=1,
                    progress=False)
    assert [(r["kind"], r["threads"]) for r in res] == [("tflite", 1), ("tflite", 2),
                                                        ("keras", "default")]
    assert all(r["faces_per_s"] > 0 and r["input_size"] == [24, 24] for r in res)
