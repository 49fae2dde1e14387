"""IR-SE50: the 50-layer "improved residual" ResNet with squeeze-excitation of ArcFace
(Deng et al. 2019, arXiv:1801.07698) and MultiFace, as in insightface's PyTorch `model_irse`
(face.evoLVe / InsightFace_Pytorch `Backbone(num_layers=50, mode="ir_se")`)."""

import keras
from keras import layers

from training.models.base import EmbeddingBackbone
from training.models.layers import check_input_shape, squeeze_excite

# (output channels, units) per stage of the 50-layer network; the first unit strides 2.
STAGES_50 = ((64, 3), (128, 4), (256, 14), (512, 3))
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9


def _bn(x, name):
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)(x)


def _conv3x3(x, filters, strides, name):
    # Explicit 1-pixel padding, as torch Conv2d(padding=1): "same" would pad a stride-2 conv
    # on the bottom/right only and shift the grid against the strided shortcut.
    x = layers.ZeroPadding2D(1, name=f"{name}_pad")(x)
    return layers.Conv2D(filters, 3, strides=strides, use_bias=False, name=name)(x)


def _unit(x, filters, strides, name):
    """bottleneck_IR_SE: BN, conv3x3, PReLU, conv3x3 (strided), BN, SE; plus the shortcut
    (subsampling when the channels match, else strided conv1x1 + BN)."""
    channels = x.shape[-1]
    if channels == filters:
        shortcut = layers.MaxPooling2D(1, strides=strides, name=f"{name}_shortcut_pool")(x)
    else:
        shortcut = layers.Conv2D(filters, 1, strides=strides, use_bias=False,
                                 name=f"{name}_shortcut_conv")(x)
        shortcut = _bn(shortcut, f"{name}_shortcut_bn")
    y = _bn(x, f"{name}_bn1")
    y = _conv3x3(y, filters, 1, f"{name}_conv1")
    y = layers.PReLU(alpha_initializer=keras.initializers.Constant(0.25), shared_axes=[1, 2],
                     name=f"{name}_prelu")(y)
    y = _conv3x3(y, filters, strides, f"{name}_conv2")
    y = _bn(y, f"{name}_bn2")
    y = squeeze_excite(y, 16, name=f"{name}_se")
    return layers.Add(name=f"{name}_add")([shortcut, y])


@keras.saving.register_keras_serializable(package="tfface")
class IRSE50(EmbeddingBackbone):
    """IR-SE50 backbone: aligned face -> un-normalised embedding.

    Input layer conv3x3 64 + BN + PReLU; 24 IR-SE units in stages of (64, 3), (128, 4),
    (256, 14), (512, 3) channels/units, each stage starting with stride 2 (112 -> 7); output
    layer BN -> Dropout -> Flatten -> Dense(embedding_size) -> BN.

    Args:
        embedding_size: embedding length (ArcFace: 512).
        input_shape: (height, width, 3); default (112, 112, 3), at least 16x16.
        dropout: dropout rate before the Dense layer (insightface drop_ratio 0.4; 0 disables).
        name: model name.

    Input: float32 (N, H, W, 3), RGB normalised as (x - 127.5) / 128.
    Output: float32 (N, embedding_size), not L2-normalised.

    Note: Flatten runs over NHWC here, NCHW in PyTorch: porting torch weights needs the
    Dense kernel rows permuted.
    """

    def __init__(self, embedding_size=512, input_shape=None, dropout=0.4, name="ir_se50",
                 **kwargs):
        if int(embedding_size) < 1:
            raise ValueError(f"embedding_size must be >= 1; received {embedding_size}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); received {dropout}")
        shape = check_input_shape(input_shape, (112, 112, 3), 16, "ir_se50")

        inputs = keras.Input(shape=shape, name="image")
        x = layers.Conv2D(64, 3, padding="same", use_bias=False, name="input_conv")(inputs)
        x = _bn(x, "input_bn")
        x = layers.PReLU(alpha_initializer=keras.initializers.Constant(0.25),
                         shared_axes=[1, 2], name="input_prelu")(x)
        for stage, (filters, units) in enumerate(STAGES_50, start=1):
            for unit in range(units):
                x = _unit(x, filters, 2 if unit == 0 else 1, name=f"stage{stage}_unit{unit + 1}")
        x = _bn(x, "output_bn1")
        if dropout > 0:
            x = layers.Dropout(dropout, name="output_dropout")(x)
        x = layers.Flatten(name="output_flatten")(x)
        x = layers.Dense(int(embedding_size), name="output_dense")(x)
        outputs = _bn(x, "output_bn2")
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)

        self.remember_config(embedding_size=int(embedding_size), input_shape=shape,
                             dropout=float(dropout))
