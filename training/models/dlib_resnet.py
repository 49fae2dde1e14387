"""dlib's face-recognition ResNet (`dlib_face_recognition_resnet_model_v1`) in Keras 3.

The network of dlib's ``face_recognition_model_v1`` (``anet_type`` in dlib's
``tools/python/src/face_recognition.cpp``; Davis King, 2017): a ResNet-34-like stack of 29
convolutions on a 150x150 RGB chip with half the usual widths (32-64-128-256), trained with a
pairwise hinge metric loss, 128-d descriptor. dlib's inference net uses ``affine`` layers (batch
norm frozen to a per-channel scale and shift) after every convolution; here they are folded into
the convolutions' kernels and biases, which is exact arithmetic up to float rounding.

dlib pads its stride-1 3x3 convolutions by 1 (Keras "same") and does not pad strided
convolutions and pools (Keras "valid"). Its residual addition (``add_prev``) zero-extends the
smaller operand: the shortcut of a down-sampling block has fewer channels than the block, and
at 8x8 -> 3x3 (conv) vs 4x4 (2x2 average pool) the block is the smaller one.
:class:`ZeroExtendAdd` reproduces that with ``keras.ops.pad`` (TFLite builtin PAD).
"""

import keras
from keras import layers

from training.models.base import EmbeddingBackbone
from training.models.layers import check_input_shape

# Residual stages, input first: (filters, number of blocks, first block down-samples).
STAGES = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))


@keras.saving.register_keras_serializable(package="tfface")
class ZeroExtendAdd(layers.Layer):
    """Sum of two NHWC tensors after zero-padding each, at the bottom/right/last channels, to
    their common maximum shape (dlib's ``add_prev`` on tensors of different sizes).

    Input: a list of two float tensors (N, H1, W1, C1), (N, H2, W2, C2) with static H, W, C.
    Output: (N, max(H1, H2), max(W1, W2), max(C1, C2)).
    """

    def call(self, inputs):
        a, b = inputs
        target = [max(int(a.shape[i]), int(b.shape[i])) for i in (1, 2, 3)]

        def extend(x):
            pads = [target[j] - int(x.shape[j + 1]) for j in range(3)]
            if not any(pads):
                return x
            return keras.ops.pad(x, [[0, 0], [0, pads[0]], [0, pads[1]], [0, pads[2]]])

        return extend(a) + extend(b)

    def compute_output_shape(self, input_shapes):
        a, b = input_shapes
        return (a[0], *(max(int(a[i]), int(b[i])) for i in (1, 2, 3)))


def _residual_block(x, filters, down, name):
    """dlib ``ares`` / ``ares_down``: relu(block(x) + shortcut(x))."""
    if down:
        y = layers.Conv2D(filters, 3, strides=2, padding="valid", name=f"{name}_conv1")(x)
        shortcut = layers.AveragePooling2D(2, strides=2, padding="valid",
                                           name=f"{name}_pool")(x)
    else:
        y = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv1")(x)
        shortcut = x
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv2")(y)
    if down or shortcut.shape[-1] != filters:
        y = ZeroExtendAdd(name=f"{name}_add")([y, shortcut])
    else:
        y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_out")(y)


@keras.saving.register_keras_serializable(package="tfface")
class DlibResNet(EmbeddingBackbone):
    """dlib's ResNet face descriptor: conv7x7/2 32 -> maxpool3/2 -> 14 residual blocks
    (3x32, 4x64, 3x128, 4x256; the first of each later stage strided) -> global average pool
    -> 128-d linear projection without bias.

    Weights come from :mod:`training.import_dlib` (dlib's public-domain model); built from
    scratch the model is randomly initialised.

    Args:
        embedding_size: descriptor length (128 for dlib's weights).
        input_shape: (height, width, 3); default (150, 150, 3), dlib's chip size and the only
            size dlib's weights were trained for. At least 64x64.
        name: model name.

    Input: float32 (N, H, W, 3), RGB normalised as (x - 127.5) / 128 (dlib's own
        (x - mean_rgb) / 256 is folded into the first convolution by the importer).
    Output: float32 (N, embedding_size), not L2-normalised (dlib's raw descriptor).
    """

    def __init__(self, embedding_size=128, input_shape=None, name="dlib_resnet", **kwargs):
        if int(embedding_size) < 1:
            raise ValueError(f"embedding_size must be >= 1; received {embedding_size}")
        shape = check_input_shape(input_shape, (150, 150, 3), 64, "dlib_resnet")

        inputs = keras.Input(shape=shape, name="image")
        x = layers.Conv2D(32, 7, strides=2, padding="valid", name="stem_conv")(inputs)
        x = layers.ReLU(name="stem_relu")(x)
        x = layers.MaxPooling2D(3, strides=2, padding="valid", name="stem_pool")(x)
        for s, (filters, blocks, down) in enumerate(STAGES, start=1):
            for b in range(1, blocks + 1):
                x = _residual_block(x, filters, down and b == 1, name=f"stage{s}_block{b}")
        x = layers.GlobalAveragePooling2D(name="pool")(x)
        outputs = layers.Dense(int(embedding_size), use_bias=False, name="embedding")(x)
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)

        self.remember_config(embedding_size=int(embedding_size), input_shape=shape)


def conv_layer_names(model):
    """Names of the model's Conv2D layers in dlib's order (input first), 29 for dlib."""
    return [layer.name for layer in model.layers if isinstance(layer, layers.Conv2D)]
