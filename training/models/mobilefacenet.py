"""MobileFaceNet (Chen, Liu, Gao, Han 2018, "MobileFaceNets: Efficient CNNs for Accurate
Real-Time Face Verification on Mobile Devices", arXiv:1804.07573), Table 1."""

import keras
from keras import layers

from training.models.base import EmbeddingBackbone
from training.models.layers import check_activation, check_input_shape, conv_bn

# Table 1 of the paper: expansion factor t, output channels c, repeats n, first stride s.
BOTTLENECKS = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1))


def _bottleneck(x, expansion, filters, strides, activation, name):
    """MobileNetV2 inverted residual: 1x1 expand, 3x3 depthwise, linear 1x1 project; the
    shortcut is added when the block keeps the resolution and the channel count."""
    channels = x.shape[-1]
    y = conv_bn(x, channels * expansion, 1, activation=activation, name=f"{name}_expand")
    y = conv_bn(y, None, 3, strides=strides, activation=activation, depthwise=True,
                name=f"{name}_depthwise")
    y = conv_bn(y, filters, 1, activation="linear", name=f"{name}_project")
    if strides == 1 and channels == filters:
        y = layers.Add(name=f"{name}_add")([x, y])
    return y


@keras.saving.register_keras_serializable(package="tfface")
class MobileFaceNet(EmbeddingBackbone):
    """MobileFaceNet backbone: aligned face -> un-normalised embedding.

    conv3x3/2 64, depthwise 3x3 64, five bottleneck stages (t, c, n, s) = (2,64,5,2),
    (4,128,1,2), (2,128,6,1), (4,128,1,2), (2,128,2,1), conv1x1 512, linear global depthwise
    convolution (GDC, kernel = the final feature map, 7x7 at 112x112), linear conv1x1 to the
    embedding, BatchNormalization. All non-linear convolutions use PReLU, as in the paper;
    `activation="relu"` swaps them for ReLU (full-integer TFLite kernels for PReLU are slow).

    Args:
        embedding_size: length of the embedding (paper: 128).
        input_shape: (height, width, 3); default (112, 112, 3). Both sides at least 32.
        activation: "prelu" (paper) or "relu".
        name: model name.

    Input: float32 (N, H, W, 3), RGB normalised as (x - 127.5) / 128.
    Output: float32 (N, embedding_size), not L2-normalised.
    """

    def __init__(
        self, embedding_size=128, input_shape=None, activation="prelu", name="mobilefacenet",
        **kwargs,
    ):
        if int(embedding_size) < 1:
            raise ValueError(f"embedding_size must be >= 1; received {embedding_size}")
        check_activation(activation)
        if activation == "linear":
            raise ValueError(
                "MobileFaceNet activation must be 'prelu' or 'relu'; received 'linear'")
        shape = check_input_shape(input_shape, (112, 112, 3), 32, "mobilefacenet")

        inputs = keras.Input(shape=shape, name="image")
        x = conv_bn(inputs, 64, 3, strides=2, activation=activation, name="conv1")
        x = conv_bn(x, None, 3, activation=activation, depthwise=True, name="conv2_dw")
        for stage, (t, c, n, s) in enumerate(BOTTLENECKS, start=1):
            for block in range(n):
                x = _bottleneck(x, t, c, s if block == 0 else 1, activation,
                                name=f"stage{stage}_block{block + 1}")
        x = conv_bn(x, 512, 1, activation=activation, name="conv_last")
        # Linear GDC: a depthwise conv whose kernel covers the whole final map (7x7 at 112).
        x = conv_bn(x, None, tuple(x.shape[1:3]), padding="valid", depthwise=True, name="gdc")
        x = conv_bn(x, int(embedding_size), 1, name="embedding")
        outputs = layers.Flatten(name="flatten")(x)
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)

        self.remember_config(embedding_size=int(embedding_size), input_shape=shape,
                             activation=activation)
