"""Reader of dlib's binary serialization for `dlib_face_recognition_resnet_model_v1.dat`.

dlib (``dlib/serialize.h``, ``dlib/dnn/core.h``, ``layers.h``, ``input.h``, ``loss.h``) writes
a network as nested C++ objects, with no type tags, so the reader follows the known layer list
of ``anet_type`` in ``tools/python/src/face_recognition.cpp`` and checks every layer's version
string on the way. The encodings used:

- integers: one control byte (low 4 bits: byte count n, bit 7: negative), then n bytes of the
  magnitude, little-endian;
- float/double scalars: a mantissa (int64) and an exponent (int16), value = m * 2**e
  (exponents 32000..32002 mean +inf, -inf, NaN);
- bool: one ASCII byte ``'0'`` or ``'1'``; strings: length (integer) then the raw bytes;
- tensors: version 2, then num_samples, k, nr, nc (integers), then float32 little-endian NCHW;
- alias tensors (views into a layer's ``params`` tensor): version 1 and the four sizes.

An ``add_layer`` stores its sub-network *before* its own details, so the file reads from the
loss layer's header down to the input layer, then the layers' parameters from the input up.
"""

import numpy as np

from tfface.errors import ModelError

_INF, _NINF, _NAN = 32000, 32001, 32002


class DlibReader:
    """Sequential reader of dlib's primitive encodings over a bytes buffer.

    Args:
        data: the file's bytes.
        name: file name used in error messages.
    """

    def __init__(self, data, name="<bytes>"):
        self.data = memoryview(data)
        self.pos = 0
        self.name = name

    def fail(self, what):
        raise ModelError(f"{self.name}: not a dlib face-recognition network ({what} at byte "
                         f"{self.pos})")

    def _take(self, n):
        if self.pos + n > len(self.data):
            self.fail("unexpected end of file")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def int(self):
        """A dlib variable-length integer (signed or unsigned encoding)."""
        ctrl = self._take(1)[0]
        size = ctrl & 0x0F
        if size == 0 or size > 8 or ctrl & 0x70:
            self.fail(f"bad integer control byte 0x{ctrl:02x}")
        value = int.from_bytes(bytes(self._take(size)), "little")
        return -value if ctrl & 0x80 else value

    def float(self):
        """A float/double scalar stored as mantissa * 2**exponent."""
        mantissa = self.int()
        exponent = self.int()
        if exponent == _INF:
            return float("inf")
        if exponent == _NINF:
            return float("-inf")
        if exponent == _NAN:
            return float("nan")
        return float(np.ldexp(float(mantissa), exponent))

    def bool(self):
        ch = bytes(self._take(1))
        if ch not in (b"0", b"1"):
            self.fail(f"bad bool byte {ch!r}")
        return ch == b"1"

    def string(self):
        n = self.int()
        if n < 0 or n > 1024:
            self.fail(f"bad string length {n}")
        return bytes(self._take(n)).decode("latin-1")

    def version(self, expected, what):
        """An integer version that must be one of ``expected``."""
        v = self.int()
        if v not in expected:
            self.fail(f"{what} version {v}, expected one of {sorted(expected)}")
        return v

    def tensor(self):
        """A resizable_tensor as float32 (num_samples, k, nr, nc)."""
        self.version({2}, "tensor")
        shape = tuple(self.int() for _ in range(4))
        if any(s < 0 for s in shape):
            self.fail(f"bad tensor shape {shape}")
        count = int(np.prod(shape))
        raw = self._take(4 * count)
        return np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)

    def alias_tensor(self):
        """An alias_tensor: only its shape (num_samples, k, nr, nc)."""
        self.version({1}, "alias_tensor")
        return tuple(self.int() for _ in range(4))


def _split_params(params, *shapes):
    """Cuts a layer's flat ``params`` tensor into consecutive alias tensors."""
    flat = params.reshape(-1)
    out, offset = [], 0
    for shape in shapes:
        n = int(np.prod(shape))
        if offset + n > flat.size:
            raise ModelError(f"layer params hold {flat.size} values; aliases need more")
        out.append(flat[offset:offset + n].reshape(shape))
        offset += n
    return out


def _read_con(r):
    version = r.string()
    if version not in ("con_4", "con_5", "con_6"):
        r.fail(f"con layer version {version!r}")
    params = r.tensor()
    num_filters, nr, nc = r.int(), r.int(), r.int()
    stride_y, stride_x, pad_y, pad_x = r.int(), r.int(), r.int(), r.int()
    filters_shape, bias_shape = r.alias_tensor(), r.alias_tensor()
    for _ in range(4):  # learning-rate and weight-decay multipliers
        r.float()
    use_bias = r.bool() if version in ("con_5", "con_6") else True
    if version == "con_6" and r.bool():
        r.fail("con layer with fused relu")
    filters, biases = _split_params(params, filters_shape, bias_shape)
    return {"type": "con", "num_filters": num_filters, "kernel": (nr, nc),
            "stride": (stride_y, stride_x), "padding": (pad_y, pad_x),
            "filters": filters,  # (num_filters, in_channels, nr, nc)
            "bias": biases.reshape(-1) if use_bias else np.zeros(num_filters, np.float32)}


def _read_affine(r):
    version = r.string()
    if version == "bn_con2":
        # A batch-norm layer saved from a training network; dlib turns it into an affine
        # layer on load: gamma' = gamma / sqrt(running_var + eps), beta' = beta - gamma' * mean.
        params = r.tensor()
        gamma_shape, beta_shape = r.alias_tensor(), r.alias_tensor()
        for _ in range(2):  # means, invstds of the last batch
            r.tensor()
        running_means, running_vars = r.tensor(), r.tensor()
        r.int()  # num_updates
        r.int()  # running_stats_window_size
        for _ in range(4):
            r.float()
        eps = r.float()
        gamma, beta = _split_params(params, gamma_shape, beta_shape)
        scale = gamma.reshape(-1) / np.sqrt(running_vars.reshape(-1) + eps)
        shift = beta.reshape(-1) - scale * running_means.reshape(-1)
        return {"type": "affine", "gamma": scale.astype(np.float32),
                "beta": shift.astype(np.float32)}
    if version not in ("affine_", "affine_2"):
        r.fail(f"affine layer version {version!r}")
    params = r.tensor()
    gamma_shape, beta_shape = r.alias_tensor(), r.alias_tensor()
    mode = r.int()
    if mode != 0:  # CONV_MODE: one gamma/beta per channel
        r.fail(f"affine layer mode {mode} (expected per-channel CONV_MODE=0)")
    if version == "affine_2" and r.bool():
        return {"type": "affine", "gamma": None, "beta": None}  # disabled: identity
    gamma, beta = _split_params(params, gamma_shape, beta_shape)
    return {"type": "affine", "gamma": gamma.reshape(-1), "beta": beta.reshape(-1)}


def _read_relu(r):
    version = r.string()
    if version == "relu_2":
        if r.bool():
            r.fail("disabled relu layer")
    elif version != "relu_":
        r.fail(f"relu layer version {version!r}")
    return {"type": "relu"}


def _read_pool(r, kind):
    version = r.string()
    if version != f"{kind}_2":
        r.fail(f"{kind} layer version {version!r}")
    nr, nc, stride_y, stride_x, pad_y, pad_x = (r.int() for _ in range(6))
    return {"type": kind, "window": (nr, nc), "stride": (stride_y, stride_x),
            "padding": (pad_y, pad_x)}


def _read_add_prev(r):
    version = r.string()
    if version != "add_prev_":
        r.fail(f"add_prev layer version {version!r}")
    return {"type": "add_prev"}


def _read_fc(r):
    version = r.string()
    if version not in ("fc_2", "fc_3"):
        r.fail(f"fc layer version {version!r}")
    num_outputs, num_inputs = r.int(), r.int()
    params = r.tensor()
    weights_shape = r.alias_tensor()
    r.alias_tensor()  # biases (empty for fc_no_bias)
    bias_mode = r.int()
    for _ in range(4):
        r.float()
    if version == "fc_3":
        r.bool()
    if bias_mode != 1:  # FC_NO_BIAS
        r.fail(f"fc bias mode {bias_mode} (expected fc_no_bias)")
    (weights,) = _split_params(params, weights_shape)
    return {"type": "fc", "num_outputs": num_outputs,
            "weights": weights.reshape(num_inputs, num_outputs)}


def _read_input(r):
    version = r.string()
    if version != "input_rgb_image_sized":
        r.fail(f"input layer {version!r}")
    mean = (r.float(), r.float(), r.float())
    size = (r.int(), r.int())
    return {"type": "input", "mean_rgb": mean, "size": size}


_DETAILS = {
    "con": _read_con, "affine": _read_affine, "relu": _read_relu,
    "max_pool": lambda r: _read_pool(r, "max_pool"),
    "avg_pool": lambda r: _read_pool(r, "avg_pool"),
    "add_prev": _read_add_prev, "fc": _read_fc,
}


def _layer_trailer(r, has_params_grad):
    """The flags and cached tensors every add_layer writes after its details (skipped).

    add_layer version 1 (files before dlib 19.x) has no params_grad; the input layer's
    add_layer always writes grad_final in that place.
    """
    for _ in range(3):  # this_layer_setup_called, gradient_input_is_stale, ..._disabled
        r.bool()
    r.tensor()  # x_grad
    r.tensor()  # cached_output
    if has_params_grad:
        r.tensor()


def anet_layer_list():
    """The layer stack of ``anet_type``, outermost first, as (kind, argument) pairs.

    kind is "tag" (argument: tag id), "skip" (tag id), "add_prev" (tag id), or a layer type
    ("con": (filters, kernel, stride), "affine", "relu", "max_pool", "avg_pool": (window,
    stride), "avg_pool_everything", "fc": outputs). The innermost "con" sits on the input.
    """
    def block(n, stride):
        # BN<con<N,3,3,1,1,relu<BN<con<N,3,3,stride,stride,SUBNET>>>>>
        return [("affine", None), ("con", (n, 3, 1)), ("relu", None), ("affine", None),
                ("con", (n, 3, stride))]

    def ares(n):
        # relu<add_prev1<block<N,affine,1,tag1<SUBNET>>>>
        return [("relu", None), ("add_prev", 1)] + block(n, 1) + [("tag", 1)]

    def ares_down(n):
        # relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,affine,2,tag1<SUBNET>>>>>>>
        return ([("relu", None), ("add_prev", 2), ("avg_pool", (2, 2)), ("skip", 1),
                 ("tag", 2)] + block(n, 2) + [("tag", 1)])

    layers = [("fc", 128), ("avg_pool_everything", None)]
    layers += ares_down(256)                                        # alevel0
    layers += ares(256) + ares(256) + ares_down(256)                # alevel1
    layers += ares(128) + ares(128) + ares_down(128)                # alevel2
    layers += ares(64) + ares(64) + ares(64) + ares_down(64)        # alevel3
    layers += ares(32) + ares(32) + ares(32)                        # alevel4
    layers += [("max_pool", (3, 2)), ("relu", None), ("affine", None), ("con", (32, 7, 2))]
    return layers


def _read_stack(r, layers, i, out):
    """Reads layers[i:] (outermost first); appends parsed layers to ``out`` input-first."""
    kind, arg = layers[i]
    if kind in ("tag", "skip"):
        r.version({1}, f"{kind}{arg} layer")
        _read_stack(r, layers, i + 1, out)
        out.append({"type": kind, "id": arg})
        return
    is_input = i == len(layers) - 1
    add_version = r.version({2, 3} if is_input else {1, 2}, "add_layer")
    if is_input:
        out.append(_read_input(r))
    else:
        _read_stack(r, layers, i + 1, out)
    detail_kind = "avg_pool" if kind == "avg_pool_everything" else kind
    layer = _DETAILS[detail_kind](r)
    if kind == "add_prev":
        layer["id"] = arg
    if kind == "avg_pool_everything" and layer["window"] != (0, 0):
        r.fail(f"expected a global average pool, found window {layer['window']}")
    if kind == "con" and (layer["num_filters"], layer["kernel"][0], layer["stride"][0]) != arg:
        r.fail(f"expected con {arg} (filters, kernel, stride), found {layer['num_filters']}, "
               f"{layer['kernel']}, {layer['stride']}")
    if kind in ("avg_pool", "max_pool") and (layer["window"][0], layer["stride"][0]) != arg:
        r.fail(f"expected {kind} {arg} (window, stride), found {layer['window']}, "
               f"{layer['stride']}")
    if kind in ("con", "avg_pool", "max_pool"):
        # DlibResNet assumes dlib's default padding: k // 2 at stride 1, none when strided.
        size, stride = layer.get("kernel", layer.get("window")), layer["stride"]
        want = tuple(0 if st != 1 else k // 2 for k, st in zip(size, stride))
        if tuple(layer["padding"]) != want:
            r.fail(f"{kind} padding {layer['padding']}, expected dlib's default {want}")
    if kind == "fc" and layer["num_outputs"] != arg:
        r.fail(f"expected fc with {arg} outputs, found {layer['num_outputs']}")
    _layer_trailer(r, has_params_grad=is_input or add_version == 2)
    if is_input and add_version == 3:
        r.int()  # _sample_expansion_factor
    out.append(layer)


def read_dlib_resnet(path):
    """Parses ``dlib_face_recognition_resnet_model_v1.dat``.

    Args:
        path: the .dat file (uncompressed; the .bz2 from dlib.net must be unpacked first).

    Returns:
        dict with "input" ({"mean_rgb": (r, g, b) floats, "size": (rows, cols)}), "loss"
        ({"margin", "distance_threshold"}) and "layers": the stack input-first, each a dict
        with "type" (con, affine, relu, max_pool, avg_pool, tag, skip, add_prev, fc) and its
        parameters as float32 numpy arrays (con "filters": (out, in, rows, cols), "bias":
        (out,); affine "gamma", "beta": (channels,); fc "weights": (inputs, outputs)).

    Raises:
        ModelError: the file is missing or is not this network.
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as err:
        raise ModelError(f"cannot read dlib model {path}: {err.strerror}") from err
    if data[:3] == b"BZh":
        raise ModelError(f"{path} is bzip2-compressed; unpack it first (bunzip2 {path})")
    r = DlibReader(data, name=str(path))
    r.version({1}, "loss layer")
    loss_version = r.string()
    if loss_version == "loss_metric_":
        loss = {"margin": 0.1, "distance_threshold": 0.75}
    elif loss_version == "loss_metric_2":
        loss = {"margin": r.float(), "distance_threshold": r.float()}
    else:
        r.fail(f"loss layer {loss_version!r} (expected loss_metric)")
    layers = []
    _read_stack(r, anet_layer_list(), 0, layers)
    if r.pos != len(r.data):
        r.fail(f"{len(r.data) - r.pos} trailing bytes")
    net_input = layers.pop(0)
    return {"input": {"mean_rgb": net_input["mean_rgb"], "size": net_input["size"]},
            "loss": loss, "layers": layers}


__all__ = ["DlibReader", "anet_layer_list", "read_dlib_resnet"]
