"""Metric-learning and distillation losses in `keras.ops` (TensorFlow and JAX backends).

- `semi_hard_triplet_loss`: FaceNet (Schroff et al. 2015) online semi-hard mining, with the
  semantics of TF-Addons `tfa.losses.triplet_semihard_loss`.
- `batch_hard_triplet_loss`: Hermans, Beyer, Leibe 2017, "In Defense of the Triplet Loss".
- `distillation_loss`: student-to-teacher embedding regression (MobileID, Luo et al. 2016).
- `multi_head_cross_entropy`: summed softmax cross-entropies of MultiFace's heads.
Each has a `keras.losses.Loss` wrapper for `model.compile`. Everything is computed in
float32, whatever the dtype policy.
"""

import keras
from keras import ops

DISTILLATION_KINDS = ("cosine", "l2")


def pairwise_distance(embeddings, squared=False):
    """Euclidean distance matrix, as TF-Addons `pairwise_distance`.

    Negative round-off is clamped to 0; the sqrt gets 1e-16 where the squared distance is 0
    so its gradient stays finite; the diagonal is exactly 0.

    Args:
        embeddings: float (N, D).
        squared: return squared distances.

    Returns:
        float32 (N, N).
    """
    e = ops.cast(embeddings, "float32")
    sq = ops.sum(ops.square(e), axis=1)
    d2 = ops.expand_dims(sq, 1) + ops.expand_dims(sq, 0) - 2.0 * ops.matmul(e, ops.transpose(e))
    d2 = ops.maximum(d2, 0.0)
    zero = ops.cast(d2 <= 0.0, "float32")
    d = d2 if squared else ops.sqrt(d2 + zero * 1e-16)
    n = ops.shape(e)[0]
    return d * (1.0 - zero) * (1.0 - ops.eye(n, dtype="float32"))


def _labels_adjacency(labels):
    labels = ops.reshape(labels, (-1,))
    return ops.equal(ops.expand_dims(labels, 1), ops.expand_dims(labels, 0))


def _masked_max(data, mask, axis):
    # As TF-Addons: an empty mask gives the row minimum.
    row_min = ops.min(data, axis=axis, keepdims=True)
    return ops.max((data - row_min) * mask, axis=axis, keepdims=True) + row_min


def _masked_min(data, mask, axis):
    # As TF-Addons: an empty mask gives the row maximum.
    row_max = ops.max(data, axis=axis, keepdims=True)
    return ops.min((data - row_max) * mask, axis=axis, keepdims=True) + row_max


def semi_hard_triplet_loss(labels, embeddings, margin=1.0, squared=False):
    """Triplet loss with semi-hard negatives mined in the batch (FaceNet; TF-Addons).

    For every anchor-positive pair (a, p), a != p, the negative is the closest n with
    d(a, n) > d(a, p); when no negative is that far, the farthest negative (when the anchor
    has no negative at all, TF-Addons' quirk of using 0 is kept). The loss is the mean of
    max(d(a, p) - d(a, n) + margin, 0) over all anchor-positive pairs. Unlike TF-Addons
    (which divides 0 by 0), a batch without any positive pair gives 0.

    Args:
        labels: int (N,) or (N, 1) identity labels.
        embeddings: float (N, D), normally L2-normalised.
        margin: alpha.
        squared: squared Euclidean distances (FaceNet paper, TF 1.x contrib) instead of
            Euclidean (TF-Addons' default "L2").

    Returns:
        float32 scalar.
    """
    pdist = pairwise_distance(embeddings, squared=squared)
    adjacency = _labels_adjacency(labels)
    not_adjacent = ops.cast(ops.logical_not(adjacency), "float32")
    n = ops.shape(pdist)[0]
    # neg_mask[a, p, k]: k is a negative of a farther from a than p is.
    farther = ops.greater(ops.expand_dims(pdist, 1), ops.expand_dims(pdist, 2))
    neg_mask = ops.cast(farther, "float32") * ops.expand_dims(not_adjacent, 1)
    has_semi_hard = ops.sum(neg_mask, axis=2) > 0.0
    dist_a = ops.broadcast_to(ops.expand_dims(pdist, 1), (n, n, n))
    outside = ops.squeeze(_masked_min(dist_a, neg_mask, axis=2), 2)
    inside = _masked_max(pdist, not_adjacent, axis=1)
    negatives = ops.where(has_semi_hard, outside, inside)
    positives = ops.cast(adjacency, "float32") - ops.eye(n, dtype="float32")
    losses = ops.maximum((margin + pdist - negatives) * positives, 0.0)
    return ops.sum(losses) / ops.maximum(ops.sum(positives), 1.0)


def batch_hard_triplet_loss(labels, embeddings, margin=1.0, squared=False, soft=False):
    """Batch-hard triplet loss: per anchor, its farthest positive and closest negative.

    Anchors without a positive or without a negative in the batch are left out; the loss
    is the mean of max(d_hardest_pos - d_hardest_neg + margin, 0) (or, with `soft`,
    softplus(d_hardest_pos - d_hardest_neg), the soft margin) over the other anchors, and
    0 when there are none.

    Args:
        labels: int (N,) or (N, 1).
        embeddings: float (N, D), normally L2-normalised.
        margin: alpha (ignored with `soft`).
        squared: squared Euclidean distances.
        soft: soft-margin variant.

    Returns:
        float32 scalar.
    """
    pdist = pairwise_distance(embeddings, squared=squared)
    adjacency = _labels_adjacency(labels)
    n = ops.shape(pdist)[0]
    positives = ops.cast(adjacency, "float32") - ops.eye(n, dtype="float32")
    negatives = 1.0 - ops.cast(adjacency, "float32")
    hardest_pos = ops.max(pdist * positives, axis=1)
    # Non-negatives are pushed above every distance so the row minimum is a negative's.
    hardest_neg = ops.min(pdist + (1.0 - negatives) * (ops.max(pdist) + 1.0), axis=1)
    valid = ops.cast((ops.sum(positives, axis=1) > 0) & (ops.sum(negatives, axis=1) > 0),
                     "float32")
    gap = hardest_pos - hardest_neg
    per_anchor = ops.softplus(gap) if soft else ops.maximum(gap + margin, 0.0)
    return ops.sum(per_anchor * valid) / ops.maximum(ops.sum(valid), 1.0)


def distillation_loss(student, teacher, kind="cosine"):
    """Embedding distillation: how far the (projected) student embedding is from the
    teacher's.

    Args:
        student: float (N, D) student embeddings, already projected to the teacher's size.
        teacher: float (N, D) teacher embeddings.
        kind: "cosine": mean of 1 - cos(student, teacher) (scale-free);
            "l2": mean over the batch of the squared Euclidean distance (MobileID's
            regression of the teacher's neurons).

    Returns:
        float32 scalar.
    """
    if kind not in DISTILLATION_KINDS:
        raise ValueError(
            f"unknown distillation kind {kind!r}; choose from {sorted(DISTILLATION_KINDS)}")
    s = ops.cast(student, "float32")
    t = ops.cast(teacher, "float32")
    if kind == "l2":
        return ops.mean(ops.sum(ops.square(s - t), axis=-1))
    s = s * ops.rsqrt(ops.maximum(ops.sum(ops.square(s), axis=-1, keepdims=True), 1e-12))
    t = t * ops.rsqrt(ops.maximum(ops.sum(ops.square(t), axis=-1, keepdims=True), 1e-12))
    return ops.mean(1.0 - ops.sum(s * t, axis=-1))


def multi_head_cross_entropy(labels, logits_list):
    """Sum over heads of the mean sparse softmax cross-entropy (MultiFace).

    Args:
        labels: int (N,) or (N, 1).
        logits_list: list of float (N, C) logits, e.g. from MultiHeadClassifier.

    Returns:
        float32 scalar.
    """
    labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
    total = 0.0
    for logits in logits_list:
        total = total + ops.mean(ops.sparse_categorical_crossentropy(
            labels, ops.cast(logits, "float32"), from_logits=True))
    return total


def distillation_with_classification(student, teacher, labels, logits, kind="cosine",
                                     classification_weight=1.0):
    """`distillation_loss` plus `classification_weight` times the mean sparse softmax
    cross-entropy of `logits` (N, C) against `labels` (N,): MobileID's regression with an
    identity term."""
    if classification_weight < 0:
        raise ValueError(f"classification_weight must be >= 0; received {classification_weight}")
    labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
    ce = ops.mean(ops.sparse_categorical_crossentropy(labels, ops.cast(logits, "float32"),
                                                      from_logits=True))
    return distillation_loss(student, teacher, kind) + classification_weight * ce


class _BatchLoss(keras.losses.Loss):
    """A batch-level loss (a scalar per batch), computed in float32."""

    def __init__(self, name, reduction="sum_over_batch_size", **kwargs):
        kwargs.pop("dtype", None)
        super().__init__(name=name, reduction=reduction, dtype="float32", **kwargs)


@keras.saving.register_keras_serializable(package="tfface")
class SemiHardTripletLoss(_BatchLoss):
    """Keras wrapper of `semi_hard_triplet_loss`: `y_true` labels (N,), `y_pred` embeddings
    (N, D)."""

    def __init__(self, margin=1.0, squared=False, name="semi_hard_triplet_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.margin = float(margin)
        self.squared = bool(squared)

    def call(self, y_true, y_pred):
        return semi_hard_triplet_loss(y_true, y_pred, self.margin, self.squared)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin, "squared": self.squared}


@keras.saving.register_keras_serializable(package="tfface")
class BatchHardTripletLoss(_BatchLoss):
    """Keras wrapper of `batch_hard_triplet_loss`: `y_true` labels (N,), `y_pred` embeddings
    (N, D)."""

    def __init__(self, margin=1.0, squared=False, soft=False, name="batch_hard_triplet_loss",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        self.margin = float(margin)
        self.squared = bool(squared)
        self.soft = bool(soft)

    def call(self, y_true, y_pred):
        return batch_hard_triplet_loss(y_true, y_pred, self.margin, self.squared, self.soft)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin, "squared": self.squared,
                "soft": self.soft}


@keras.saving.register_keras_serializable(package="tfface")
class DistillationLoss(_BatchLoss):
    """Keras wrapper of `distillation_loss`: `y_true` teacher embeddings (N, D), `y_pred`
    projected student embeddings (N, D). For the classification term, give the model a
    logits output too and compile it with SparseCategoricalCrossentropy(from_logits=True)
    and `loss_weights`."""

    def __init__(self, kind="cosine", name="distillation_loss", **kwargs):
        if kind not in DISTILLATION_KINDS:
            raise ValueError(
                f"unknown distillation kind {kind!r}; choose from {sorted(DISTILLATION_KINDS)}")
        super().__init__(name=name, **kwargs)
        self.kind = kind

    def call(self, y_true, y_pred):
        return distillation_loss(y_pred, y_true, self.kind)

    def get_config(self):
        return {**super().get_config(), "kind": self.kind}
