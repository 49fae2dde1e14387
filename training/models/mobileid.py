"""A MobileID-style student for embedding distillation.

MobileID (Luo, Zhu, Liu, Wang, Tang, "Face Model Compression by Distilling Knowledge from
Neurons", AAAI 2016) trains a very small CNN to regress the selected top-layer neurons of a
large teacher. The published student (a few conv layers on a small grey crop) is not
specified closely enough to rebuild, so this is a student of the same budget in today's
building blocks: a strided stem and depthwise-separable convolutions down to 7x7, a global
depthwise conv and a linear projection, about 4.3M multiply-adds (8.6 MFLOPs) at 112x112.
"""

import keras
from keras import layers

from training.models.base import EmbeddingBackbone
from training.models.layers import check_activation, check_input_shape, conv_bn

# (output channels, stride) of the depthwise-separable blocks after the stem.
BLOCKS = ((32, 2), (64, 2), (64, 1), (128, 2), (128, 1))


@keras.saving.register_keras_serializable(package="tfface")
class MobileID(EmbeddingBackbone):
    """Tiny student: conv3x3/2 16 -> 5 depthwise-separable blocks (32/2, 64/2, 64, 128/2, 128)
    -> linear global depthwise conv -> linear 1x1 conv to the embedding -> BN.

    Args:
        embedding_size: embedding length (default 128, the dlib teacher's size).
        input_shape: (height, width, 3); default (112, 112, 3), at least 32x32.
        activation: "relu" (default; fast in int8 TFLite) or "prelu".
        name: model name.

    Input: float32 (N, H, W, 3), RGB normalised as (x - 127.5) / 128.
    Output: float32 (N, embedding_size), not L2-normalised.
    """

    def __init__(self, embedding_size=128, input_shape=None, activation="relu", name="mobileid",
                 **kwargs):
        if int(embedding_size) < 1:
            raise ValueError(f"embedding_size must be >= 1; received {embedding_size}")
        check_activation(activation)
        if activation == "linear":
            raise ValueError("MobileID activation must be 'relu' or 'prelu'; received 'linear'")
        shape = check_input_shape(input_shape, (112, 112, 3), 32, "mobileid")

        inputs = keras.Input(shape=shape, name="image")
        x = conv_bn(inputs, 16, 3, strides=2, activation=activation, name="stem")
        for i, (filters, strides) in enumerate(BLOCKS, start=1):
            x = conv_bn(x, None, 3, strides=strides, activation=activation, depthwise=True,
                        name=f"block{i}_dw")
            x = conv_bn(x, filters, 1, activation=activation, name=f"block{i}_pw")
        x = conv_bn(x, None, tuple(x.shape[1:3]), padding="valid", depthwise=True, name="gdc")
        x = conv_bn(x, int(embedding_size), 1, name="embedding")
        outputs = layers.Flatten(name="flatten")(x)
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)

        self.remember_config(embedding_size=int(embedding_size), input_shape=shape,
                             activation=activation)
