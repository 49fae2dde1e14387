"""Classification heads for face-recognition training: the combined angular margin head of
ArcFace/CosFace/SphereFace, plain softmax, and MultiFace's multi-head classifier.

All heads take `[embeddings, labels]` and return logits for
`keras.losses.SparseCategoricalCrossentropy(from_logits=True)`. The labels only place the
margin; with `labels=None` a head returns the margin-free logits (inference, monitoring).
"""

import math

import keras
from keras import layers, ops

# Margins (m1, m2, m3) as in insightface's configs; "softmax" (plain Dense) is from_preset's.
MARGIN_PRESETS = {
    "arcface": {"m1": 1.0, "m2": 0.5, "m3": 0.0},
    "cosface": {"m1": 1.0, "m2": 0.0, "m3": 0.35},
    "sphereface": {"m1": 1.35, "m2": 0.0, "m3": 0.0},
    "combined": {"m1": 1.0, "m2": 0.3, "m3": 0.2},
    "norm_softmax": {"m1": 1.0, "m2": 0.0, "m3": 0.0},
}
# Clip on cos(theta) before arccos: keeps d/dcos arccos finite (about 700 at 1 - 1e-6).
COS_CLIP = 1e-6


def _split_inputs(inputs):
    if isinstance(inputs, (list, tuple)):
        if len(inputs) != 2:
            raise ValueError(f"expected [embeddings, labels]; received {len(inputs)} inputs")
        return inputs[0], inputs[1]
    return inputs, None


def margin_target_logit(cos_theta, m1, m2, m3, easy_margin=False):
    """cos(m1 * theta + m2) - m3 for the target class, with arcface_torch's fallbacks.

    Where m1 * theta + m2 would pass pi the margin stops being a penalty (cos rises again);
    there arcface_torch's CombinedMarginLoss uses `cos(theta) - sin(pi - m2) * m2` (for
    m1 = 1; for m1 != 1 the linear fallback is made continuous at theta = (pi - m2) / m1).
    With `easy_margin`, the margin only applies where cos(theta) > 0.

    Args:
        cos_theta: float32 (N,) cosine between each embedding and its class centre.
        m1, m2, m3: multiplicative angular, additive angular and additive cosine margins.
        easy_margin: apply the margin only for theta < pi/2.

    Returns:
        float32 (N,), not yet multiplied by the scale.
    """
    if m1 == 1.0 and m2 == 0.0:
        target = cos_theta - m3
        return ops.where(cos_theta > 0, target, cos_theta) if easy_margin else target
    if m1 == 1.0:
        # cos(theta + m2) by the sum formula: no arccos, so no infinite gradient at |cos| = 1.
        sin_theta = ops.sqrt(ops.clip(1.0 - ops.square(cos_theta), 1e-12, 1.0))
        target = cos_theta * math.cos(m2) - sin_theta * math.sin(m2)
        threshold = math.cos(math.pi - m2)
        fallback = cos_theta - math.sin(math.pi - m2) * m2
    else:
        theta = ops.arccos(ops.clip(cos_theta, -1.0 + COS_CLIP, 1.0 - COS_CLIP))
        target = ops.cos(m1 * theta + m2)
        theta_max = (math.pi - m2) / m1  # < pi, as m1 > 1
        threshold = math.cos(theta_max)
        # Continuous at theta_max, where cos(m1 * theta + m2) = -1.
        fallback = cos_theta - (1.0 + threshold)
    if easy_margin:
        return ops.where(cos_theta > 0, target - m3, cos_theta)
    return ops.where(cos_theta > threshold, target, fallback) - m3


@keras.saving.register_keras_serializable(package="tfface")
class CombinedMarginHead(layers.Layer):
    """Cosine classifier with the combined margin s * (cos(m1 * theta + m2) - m3) on the
    target logit and s * cos(theta) on the others (insightface; arcface_torch
    CombinedMarginLoss): ArcFace (Deng et al. 2019) m2 = 0.5, CosFace (Wang et al. 2018)
    m3 = 0.35, SphereFace-like (Liu et al. 2017) m1 > 1, normalised softmax with no margin;
    `normalize=False` gives a plain softmax head (un-normalised Dense with bias, no scale and
    no margin).

    The margin is computed in float32 whatever the dtype policy (inputs and the class
    centres are cast; the layer does not autocast), so it trains under "mixed_float16".

    Args:
        num_classes: number of identities.
        scale: s (insightface 64).
        m1, m2, m3: margins; see MARGIN_PRESETS.
        easy_margin: apply the margin only where cos(theta) > 0.
        normalize: cosine head (True) or plain softmax Dense (False; margins must be default).
        kernel_initializer: initializer of the (D, num_classes) class centres.

    Inputs: [embeddings float (N, D), labels int (N,) or (N, 1)], or embeddings alone.
        A negative label (an unlabelled sample) gets no margin.
    Output: float32 logits (N, num_classes).
    """

    def __init__(self, num_classes, scale=64.0, m1=1.0, m2=0.5, m3=0.0, easy_margin=False,
                 normalize=True, kernel_initializer="glorot_normal", **kwargs):
        kwargs["autocast"] = False
        super().__init__(**kwargs)
        if int(num_classes) < 2:
            raise ValueError(f"num_classes must be >= 2; received {num_classes}")
        if scale <= 0:
            raise ValueError(f"scale must be > 0; received {scale}")
        if m1 < 1.0 or m2 < 0.0 or m3 < 0.0 or m2 >= math.pi:
            raise ValueError(
                f"margins need m1 >= 1, 0 <= m2 < pi, m3 >= 0; received m1={m1}, m2={m2}, m3={m3}"
            )
        if not normalize and (m1 != 1.0 or m2 != 0.0 or m3 != 0.0):
            raise ValueError(
                "normalize=False is plain softmax: set m1=1, m2=0, m3=0; "
                f"received m1={m1}, m2={m2}, m3={m3}"
            )
        self.num_classes = int(num_classes)
        self.scale = float(scale)
        self.m1 = float(m1)
        self.m2 = float(m2)
        self.m3 = float(m3)
        self.easy_margin = bool(easy_margin)
        self.normalize = bool(normalize)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    @classmethod
    def from_preset(cls, preset, num_classes, **kwargs):
        """`CombinedMarginHead.from_preset("arcface", 1000)`; "softmax" is the plain head."""
        if preset == "softmax":
            return cls(num_classes, m1=1.0, m2=0.0, m3=0.0, normalize=False, **kwargs)
        if preset not in MARGIN_PRESETS:
            choices = sorted([*MARGIN_PRESETS, "softmax"])
            raise ValueError(f"unknown head preset {preset!r}; choose from {choices}")
        return cls(num_classes, **{**MARGIN_PRESETS[preset], **kwargs})

    def build(self, input_shape):
        emb_shape = input_shape[0] if isinstance(input_shape, (list, tuple)) and isinstance(
            input_shape[0], (list, tuple)) else input_shape
        dim = emb_shape[-1]
        self.kernel = self.add_weight(
            name="kernel", shape=(dim, self.num_classes), initializer=self.kernel_initializer,
            dtype="float32",
        )
        self.bias = None
        if not self.normalize:
            self.bias = self.add_weight(name="bias", shape=(self.num_classes,),
                                        initializer="zeros", dtype="float32")

    def call(self, inputs):
        embeddings, labels = _split_inputs(inputs)
        x = ops.cast(embeddings, "float32")
        kernel = ops.cast(self.kernel, "float32")
        if not self.normalize:
            return ops.matmul(x, kernel) + ops.cast(self.bias, "float32")
        x = x * ops.rsqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), 1e-12))
        kernel = kernel * ops.rsqrt(
            ops.maximum(ops.sum(ops.square(kernel), axis=0, keepdims=True), 1e-12))
        # Normalised vectors can give |cos| slightly above 1 in float32.
        cos = ops.clip(ops.matmul(x, kernel), -1.0, 1.0)
        if labels is None or (self.m1 == 1.0 and self.m2 == 0.0 and self.m3 == 0.0):
            return cos * self.scale
        one_hot = ops.one_hot(ops.reshape(ops.cast(labels, "int32"), (-1,)), self.num_classes,
                              dtype="float32")
        target_cos = ops.sum(cos * one_hot, axis=-1)
        target = margin_target_logit(target_cos, self.m1, self.m2, self.m3, self.easy_margin)
        # Only the target entry changes: cos + one_hot * (target - target_cos).
        logits = cos + one_hot * ops.expand_dims(target - target_cos, -1)
        return logits * self.scale

    def compute_output_spec(self, inputs):
        embeddings, _ = _split_inputs(inputs)
        return keras.KerasTensor((embeddings.shape[0], self.num_classes), dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_classes": self.num_classes,
            "scale": self.scale,
            "m1": self.m1,
            "m2": self.m2,
            "m3": self.m3,
            "easy_margin": self.easy_margin,
            "normalize": self.normalize,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        })
        return config


MULTI_HEAD_MODES = ("split", "project")


@keras.saving.register_keras_serializable(package="tfface")
class MultiHeadClassifier(layers.Layer):
    """MultiFace (Xu et al. 2021, "MultiFace: A Generic Training Mechanism for Boosting Face
    Recognition Performance", arXiv:2101.09899): N classifiers, each on a low-dimensional
    part of the embedding, whose losses are summed, so that each part learns to separate
    identities on its own.

    `mode="split"` cuts the D-d embedding into N equal slices (D must divide by N);
    `mode="project"` gives each head its own linear projection (no bias) to
    `projection_size` dimensions (default D // N). Each head is a CombinedMarginHead built
    from `head_config` (default: ArcFace, s = 64, m2 = 0.5).

    Args:
        num_classes: number of identities.
        num_heads: N, 2 or 4 in the paper (any N >= 2 is accepted).
        mode: "split" or "project".
        projection_size: per-head size in "project" mode; None means D // N.
        head_config: CombinedMarginHead keyword arguments shared by all heads.

    Inputs: [embeddings float (N, D), labels int (N,)], or embeddings alone.
    Output: list of N float32 logits (batch, num_classes); train with the sum of their
    cross-entropies (`training.losses.multi_head_cross_entropy`, or a Keras model with N
    outputs, whose per-output losses Keras sums).
    """

    def __init__(self, num_classes, num_heads=2, mode="split", projection_size=None,
                 head_config=None, **kwargs):
        kwargs["autocast"] = False
        super().__init__(**kwargs)
        if int(num_heads) < 2:
            raise ValueError(f"num_heads must be >= 2; received {num_heads}")
        if mode not in MULTI_HEAD_MODES:
            raise ValueError(f"unknown mode {mode!r}; choose from {sorted(MULTI_HEAD_MODES)}")
        if projection_size is not None and (mode != "project" or int(projection_size) < 1):
            raise ValueError(
                "projection_size needs mode='project' and a value >= 1; "
                f"received mode={mode!r}, projection_size={projection_size}"
            )
        self.num_classes = int(num_classes)
        self.num_heads = int(num_heads)
        self.mode = mode
        self.projection_size = None if projection_size is None else int(projection_size)
        self.head_config = dict(MARGIN_PRESETS["arcface"] if head_config is None else head_config)
        for key in ("num_classes", "name"):
            if key in self.head_config:
                raise ValueError(f"head_config must not set {key!r}; received {head_config}")
        self.heads = [
            CombinedMarginHead(self.num_classes, name=f"head{i + 1}", **self.head_config)
            for i in range(self.num_heads)
        ]
        self.projections = []

    def build(self, input_shape):
        emb_shape = input_shape[0] if isinstance(input_shape[0], (list, tuple)) else input_shape
        dim = emb_shape[-1]
        if self.mode == "split":
            if dim % self.num_heads:
                raise ValueError(
                    f"split mode needs the embedding size ({dim}) to divide by num_heads "
                    f"({self.num_heads}); use mode='project' otherwise"
                )
            part = dim // self.num_heads
        else:
            part = self.projection_size or max(dim // self.num_heads, 1)
            self.projections = [
                layers.Dense(part, use_bias=False, dtype="float32", name=f"projection{i + 1}")
                for i in range(self.num_heads)
            ]
            for projection in self.projections:
                projection.build((None, dim))
        for head in self.heads:
            head.build((None, part))

    def _parts(self, embeddings):
        x = ops.cast(embeddings, "float32")
        if self.mode == "project":
            return [projection(x) for projection in self.projections]
        return ops.split(x, self.num_heads, axis=-1)

    def call(self, inputs):
        embeddings, labels = _split_inputs(inputs)
        parts = self._parts(embeddings)
        if labels is None:
            return [head(part) for head, part in zip(self.heads, parts)]
        return [head([part, labels]) for head, part in zip(self.heads, parts)]

    def compute_output_spec(self, inputs):
        embeddings, _ = _split_inputs(inputs)
        shape = (embeddings.shape[0], self.num_classes)
        return [keras.KerasTensor(shape, dtype="float32") for _ in range(self.num_heads)]

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_classes": self.num_classes,
            "num_heads": self.num_heads,
            "mode": self.mode,
            "projection_size": self.projection_size,
            "head_config": dict(self.head_config),
        })
        return config
