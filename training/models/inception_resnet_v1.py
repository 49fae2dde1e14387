"""Inception-ResNet-v1 (Szegedy et al. 2016, arXiv:1602.07261) as the FaceNet backbone of
davidsandberg/facenet (`src/models/inception_resnet_v1.py`), layer for layer."""

import keras
from keras import layers

from training.models.base import EmbeddingBackbone
from training.models.layers import check_input_shape

# facenet's slim batch_norm_params: decay 0.995, epsilon 0.001, no scale (gamma).
BN = {"momentum": 0.995, "epsilon": 0.001, "scale": False}


def _conv(x, filters, kernel_size, strides=1, padding="same", name="conv"):
    """slim.conv2d in facenet's arg_scope: conv (no bias) -> BN (beta only) -> ReLU."""
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding=padding, use_bias=False,
                      name=name)(x)
    x = layers.BatchNormalization(name=f"{name}_bn", **BN)(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _residual(x, branches, scale, activate, name):
    """Concatenates the branches, 1x1 conv (with bias, no BN) back to the input depth, adds
    `scale` times it to the input and applies ReLU unless `activate` is False."""
    mixed = layers.Concatenate(name=f"{name}_concat")(branches)
    up = layers.Conv2D(x.shape[-1], 1, name=f"{name}_up")(mixed)
    # Rescaling instead of a Lambda: serialisable and converts to one TFLite MUL.
    up = layers.Rescaling(scale, name=f"{name}_scale")(up)
    x = layers.Add(name=f"{name}_add")([x, up])
    return layers.ReLU(name=f"{name}_relu")(x) if activate else x


def _block35(x, scale, name):
    b0 = _conv(x, 32, 1, name=f"{name}_b0_1x1")
    b1 = _conv(x, 32, 1, name=f"{name}_b1_1x1")
    b1 = _conv(b1, 32, 3, name=f"{name}_b1_3x3")
    b2 = _conv(x, 32, 1, name=f"{name}_b2_1x1")
    b2 = _conv(b2, 32, 3, name=f"{name}_b2_3x3a")
    b2 = _conv(b2, 32, 3, name=f"{name}_b2_3x3b")
    return _residual(x, [b0, b1, b2], scale, True, name)


def _block17(x, scale, name):
    b0 = _conv(x, 128, 1, name=f"{name}_b0_1x1")
    b1 = _conv(x, 128, 1, name=f"{name}_b1_1x1")
    b1 = _conv(b1, 128, (1, 7), name=f"{name}_b1_1x7")
    b1 = _conv(b1, 128, (7, 1), name=f"{name}_b1_7x1")
    return _residual(x, [b0, b1], scale, True, name)


def _block8(x, scale, activate, name):
    b0 = _conv(x, 192, 1, name=f"{name}_b0_1x1")
    b1 = _conv(x, 192, 1, name=f"{name}_b1_1x1")
    b1 = _conv(b1, 192, (1, 3), name=f"{name}_b1_1x3")
    b1 = _conv(b1, 192, (3, 1), name=f"{name}_b1_3x1")
    return _residual(x, [b0, b1], scale, activate, name)


def _reduction_a(x, name):
    b0 = _conv(x, 384, 3, strides=2, padding="valid", name=f"{name}_b0_3x3")
    b1 = _conv(x, 192, 1, name=f"{name}_b1_1x1")
    b1 = _conv(b1, 192, 3, name=f"{name}_b1_3x3")
    b1 = _conv(b1, 256, 3, strides=2, padding="valid", name=f"{name}_b1_3x3s2")
    b2 = layers.MaxPooling2D(3, strides=2, padding="valid", name=f"{name}_b2_pool")(x)
    return layers.Concatenate(name=f"{name}_concat")([b0, b1, b2])


def _reduction_b(x, name):
    b0 = _conv(x, 256, 1, name=f"{name}_b0_1x1")
    b0 = _conv(b0, 384, 3, strides=2, padding="valid", name=f"{name}_b0_3x3s2")
    b1 = _conv(x, 256, 1, name=f"{name}_b1_1x1")
    b1 = _conv(b1, 256, 3, strides=2, padding="valid", name=f"{name}_b1_3x3s2")
    b2 = _conv(x, 256, 1, name=f"{name}_b2_1x1")
    b2 = _conv(b2, 256, 3, name=f"{name}_b2_3x3")
    b2 = _conv(b2, 256, 3, strides=2, padding="valid", name=f"{name}_b2_3x3s2")
    b3 = layers.MaxPooling2D(3, strides=2, padding="valid", name=f"{name}_b3_pool")(x)
    return layers.Concatenate(name=f"{name}_concat")([b0, b1, b2, b3])


@keras.saving.register_keras_serializable(package="tfface")
class InceptionResNetV1(EmbeddingBackbone):
    """FaceNet's Inception-ResNet-v1 (Schroff et al. 2015 training, davidsandberg/facenet
    network): stem, 5x block35 (scale 0.17), reduction A, 10x block17 (0.10), reduction B,
    5x block8 (0.20) + one block8 without ReLU, global average pool, dropout, bottleneck
    Dense (no bias) + BN (no gamma).

    Args:
        embedding_size: bottleneck size (facenet 20180402-114759: 512; 20170512-110547: 128).
        input_shape: (height, width, 3); default (160, 160, 3); at least 75x75 (112 works).
        dropout: dropout rate before the bottleneck (facenet keep_probability 0.8 -> 0.2).
        name: model name.

    Input: float32 (N, H, W, 3), RGB normalised as (x - 127.5) / 128.
    Output: float32 (N, embedding_size), not L2-normalised.
    """

    def __init__(self, embedding_size=512, input_shape=None, dropout=0.2,
                 name="inception_resnet_v1", **kwargs):
        if int(embedding_size) < 1:
            raise ValueError(f"embedding_size must be >= 1; received {embedding_size}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); received {dropout}")
        shape = check_input_shape(input_shape, (160, 160, 3), 75, "inception_resnet_v1")

        inputs = keras.Input(shape=shape, name="image")
        x = _conv(inputs, 32, 3, strides=2, padding="valid", name="conv1a_3x3")
        x = _conv(x, 32, 3, padding="valid", name="conv2a_3x3")
        x = _conv(x, 64, 3, name="conv2b_3x3")
        x = layers.MaxPooling2D(3, strides=2, padding="valid", name="maxpool3a")(x)
        x = _conv(x, 80, 1, padding="valid", name="conv3b_1x1")
        x = _conv(x, 192, 3, padding="valid", name="conv4a_3x3")
        x = _conv(x, 256, 3, strides=2, padding="valid", name="conv4b_3x3")
        for i in range(5):
            x = _block35(x, 0.17, name=f"block35_{i + 1}")
        x = _reduction_a(x, "reduction_a")
        for i in range(10):
            x = _block17(x, 0.10, name=f"block17_{i + 1}")
        x = _reduction_b(x, "reduction_b")
        for i in range(5):
            x = _block8(x, 0.20, True, name=f"block8_{i + 1}")
        x = _block8(x, 1.0, False, name="block8_6")
        x = layers.GlobalAveragePooling2D(name="avgpool")(x)
        if dropout > 0:
            x = layers.Dropout(dropout, name="dropout")(x)
        x = layers.Dense(int(embedding_size), use_bias=False, name="bottleneck")(x)
        outputs = layers.BatchNormalization(name="bottleneck_bn", **BN)(x)
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)

        self.remember_config(embedding_size=int(embedding_size), input_shape=shape,
                             dropout=float(dropout))
