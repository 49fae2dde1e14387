"""dlib's parsed face-recognition network -> weights of :class:`DlibResNet`.

Each dlib convolution is followed by an ``affine`` layer (y = gamma * x + beta per channel);
both fold into one Keras Conv2D: kernel * gamma, bias * gamma + beta. dlib's input layer,
(x - mean_rgb) / 256 on 0..255 RGB, is rewritten for the project's input (x - 127.5) / 128:
x_dlib = 0.5 * x_ours + (127.5 - mean_rgb) / 256, folded into the first convolution, which
dlib does not pad, so the fold is exact (no zero border would see the shifted value).
"""

import numpy as np

from tfface.errors import ModelError
from training.models.dlib_resnet import STAGES

PROJECT_MEAN, PROJECT_STD = 127.5, 128.0
DLIB_STD = 256.0


def conv_names():
    """Keras Conv2D names of :class:`DlibResNet` in dlib's order (input first)."""
    names = ["stem_conv"]
    for s, (_, blocks, _) in enumerate(STAGES, start=1):
        for b in range(1, blocks + 1):
            names += [f"stage{s}_block{b}_conv1", f"stage{s}_block{b}_conv2"]
    return names


def folded_convolutions(net):
    """(kernel (kh, kw, in, out), bias (out,)) float32 pairs, input first, with each conv's
    affine layer and (for the first) dlib's input normalisation folded in.

    Args:
        net: dict from :func:`training.dlib_format.read_dlib_resnet`.
    """
    stack = net["layers"]
    out = []
    for i, layer in enumerate(stack):
        if layer["type"] != "con":
            continue
        affine = stack[i + 1] if i + 1 < len(stack) else None
        if affine is None or affine["type"] != "affine":
            raise ModelError("dlib network: a convolution is not followed by an affine layer")
        kernel = layer["filters"].transpose(2, 3, 1, 0).astype(np.float64)  # OIHW -> HWIO
        bias = layer["bias"].astype(np.float64)
        if affine["gamma"] is not None:
            gamma = affine["gamma"].astype(np.float64)
            kernel = kernel * gamma
            bias = bias * gamma + affine["beta"].astype(np.float64)
        if not out:
            if tuple(layer["padding"]) != (0, 0):
                raise ModelError("dlib network: the first convolution is padded; the input "
                                 "normalisation cannot be folded into it exactly")
            mean = np.asarray(net["input"]["mean_rgb"], dtype=np.float32).astype(np.float64)
            shift = (PROJECT_MEAN - mean) / DLIB_STD  # per input channel
            bias = bias + np.einsum("hwio,i->o", kernel, shift)
            kernel = kernel * (PROJECT_STD / DLIB_STD)
        out.append((kernel.astype(np.float32), bias.astype(np.float32)))
    return out


def load_into(model, net):
    """Sets a :class:`DlibResNet`'s weights from a parsed dlib network.

    Raises:
        ModelError: the network does not match the model's layers.
    """
    convs = folded_convolutions(net)
    names = conv_names()
    if len(convs) != len(names):
        raise ModelError(f"dlib network has {len(convs)} convolutions; DlibResNet has "
                         f"{len(names)}")
    for name, (kernel, bias) in zip(names, convs):
        layer = model.get_layer(name)
        want = tuple(layer.kernel.shape)
        if kernel.shape != want:
            raise ModelError(f"{name}: dlib kernel {kernel.shape}, model expects {want}")
        layer.set_weights([kernel, bias])
    fc = [layer for layer in net["layers"] if layer["type"] == "fc"]
    dense = model.get_layer("embedding")
    if len(fc) != 1 or fc[0]["weights"].shape != tuple(dense.kernel.shape):
        raise ModelError(f"dlib fc layer does not match the model's embedding layer "
                         f"{tuple(dense.kernel.shape)}")
    dense.set_weights([fc[0]["weights"]])
    return model
