"""Layers shared by the backbones: L2 normalisation, squeeze-excitation, conv-BN-activation.

Everything here uses `keras.ops` only, so the layers run on the TensorFlow and JAX backends.
"""

import keras
from keras import layers, ops

ACTIVATIONS = ("prelu", "relu", "linear")


@keras.saving.register_keras_serializable(package="tfface")
class L2Normalize(layers.Layer):
    """Scales each vector along `axis` to unit L2 norm: `x * rsqrt(max(sum(x**2), epsilon))`.

    Written as `x * rsqrt(max(...))`, the pattern the TFLite converter fuses into one
    L2_NORMALIZATION op. The output is computed in float32 even under a mixed-precision policy,
    since the sum of squares of a 512-d float16 vector loses the precision that cosine
    similarity needs.

    Args:
        axis: axis to normalise over (default: last).
        epsilon: floor on the squared norm, so a zero vector maps to zero with finite gradients.

    Input: float (..., D). Output: float32 (..., D), unit norm along `axis`.
    """

    def __init__(self, axis=-1, epsilon=1e-12, **kwargs):
        super().__init__(**kwargs)
        if epsilon <= 0:
            raise ValueError(f"epsilon must be > 0; received epsilon={epsilon}")
        self.axis = axis
        self.epsilon = epsilon

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        square_sum = ops.sum(ops.square(x), axis=self.axis, keepdims=True)
        return x * ops.rsqrt(ops.maximum(square_sum, self.epsilon))

    def get_config(self):
        config = super().get_config()
        config.update({"axis": self.axis, "epsilon": self.epsilon})
        return config


def check_activation(activation):
    """Raises ValueError unless `activation` is one of ACTIVATIONS."""
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}"
        )


def activation_layer(activation, name):
    """PReLU with one slope per channel (as in the papers), ReLU, or nothing for "linear".

    Returns a callable layer; for "linear" the identity function.
    """
    check_activation(activation)
    if activation == "prelu":
        # shared_axes=[1, 2]: one slope per channel, as torch.nn.PReLU(channels).
        return layers.PReLU(
            alpha_initializer=keras.initializers.Constant(0.25), shared_axes=[1, 2], name=name
        )
    if activation == "relu":
        return layers.ReLU(name=name)
    return lambda x: x


def conv_bn(
    x,
    filters,
    kernel_size,
    strides=1,
    activation="linear",
    padding="same",
    depthwise=False,
    name="conv",
    bn_epsilon=1e-5,
    bn_momentum=0.9,
    bn_scale=True,
):
    """Convolution (no bias) -> BatchNormalization -> activation, with named layers.

    Args:
        x: NHWC tensor.
        filters: output channels (ignored for depthwise, which keeps the channel count).
        kernel_size: int or (kh, kw).
        strides: int.
        activation: "prelu", "relu" or "linear".
        padding: "same" or "valid".
        depthwise: use a depthwise convolution (depth multiplier 1).
        name: prefix of the layer names.
        bn_epsilon, bn_momentum, bn_scale: BatchNormalization settings.

    Returns:
        NHWC tensor.
    """
    if depthwise:
        # He initialisation over the kxk taps of one channel: Keras counts the depthwise
        # kernel's fan-in as k*k*C, so its default shrinks activations by ~sqrt(C) per layer.
        x = layers.DepthwiseConv2D(
            kernel_size, strides=strides, padding=padding, use_bias=False,
            depthwise_initializer=keras.initializers.VarianceScaling(
                2.0, "fan_out", "truncated_normal"),
            name=f"{name}_dw",
        )(x)
    else:
        x = layers.Conv2D(
            filters, kernel_size, strides=strides, padding=padding, use_bias=False,
            name=f"{name}_conv",
        )(x)
    x = layers.BatchNormalization(
        epsilon=bn_epsilon, momentum=bn_momentum, scale=bn_scale, name=f"{name}_bn"
    )(x)
    return activation_layer(activation, f"{name}_{activation}")(x)


def squeeze_excite(x, reduction, name):
    """Squeeze-and-excitation (Hu et al. 2018) as in insightface's SEModule: global average
    pool, 1x1 conv to C/reduction (no bias), ReLU, 1x1 conv back to C (no bias), sigmoid gate.

    Built from builtin layers (GlobalAveragePooling2D keeps dims), so it converts to TFLite
    as MEAN, CONV_2D, LOGISTIC and MUL.
    """
    channels = x.shape[-1]
    s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(x)
    s = layers.Conv2D(channels // reduction, 1, use_bias=False, name=f"{name}_fc1")(s)
    s = layers.ReLU(name=f"{name}_relu")(s)
    s = layers.Conv2D(channels, 1, use_bias=False, name=f"{name}_fc2")(s)
    s = layers.Activation("sigmoid", name=f"{name}_sigmoid")(s)
    return layers.Multiply(name=f"{name}_scale")([x, s])


def check_input_shape(input_shape, default, min_size, name):
    """Returns a (H, W, 3) input shape, or raises ValueError naming what was received."""
    if input_shape is None:
        return default
    shape = tuple(input_shape)
    if len(shape) != 3 or shape[-1] != 3:
        raise ValueError(f"{name}: input_shape must be (height, width, 3); received {shape}")
    if any(s is None or s < min_size for s in shape[:2]):
        raise ValueError(
            f"{name}: input height and width must be at least {min_size}; received {shape}"
        )
    return shape
