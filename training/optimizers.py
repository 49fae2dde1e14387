"""Optimizers for the training programs: SGD with momentum and AdamW, both with weight decay
that skips biases and normalisation/PReLU parameters.

Keras 3 applies ``weight_decay`` in decoupled form (``w -= lr * wd * w`` before the update,
Loshchilov & Hutter, "Decoupled Weight Decay Regularization", 2019) for every optimizer. Decay
on BatchNorm scale/offset and biases only shrinks the network's freedom to rescale, so those are
excluded, as in most ImageNet and face recipes (insightface's partial-FC recipes, timm's
``param_groups_weight_decay``).
"""

import keras

OPTIMIZERS = ("sgd", "adamw")

# Variable names of parameters that get no weight decay: Dense/Conv biases, BatchNormalization
# gamma/beta, PReLU alpha (its shape is (1, 1, C) with shared axes, so ndim alone misses it).
NO_DECAY_NAMES = ("bias", "gamma", "beta", "alpha")


def no_decay_variables(variables):
    """The variables weight decay should skip: 0/1-D tensors and names in NO_DECAY_NAMES.

    Args:
        variables: iterable of keras Variables (e.g. ``model.trainable_variables``).
    Returns:
        list of those variables that get no decay.
    """
    return [v for v in variables if len(v.shape) <= 1 or v.name in NO_DECAY_NAMES]


def make_optimizer(name, learning_rate, weight_decay=0.0, momentum=0.9, variables=None):
    """An SGD-momentum or AdamW optimizer.

    Args:
        name: "sgd" or "adamw".
        learning_rate: float or a LearningRateSchedule.
        weight_decay: decoupled decay coefficient (0 disables it).
        momentum: SGD momentum (ignored for AdamW).
        variables: the trainable variables the optimizer will update; when given, biases and
            BN/PReLU parameters among them are excluded from weight decay.
    Returns:
        a ``keras.optimizers.Optimizer`` (not yet built).
    """
    wd = float(weight_decay) if weight_decay else None
    if name == "sgd":
        opt = keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum,
                                   weight_decay=wd)
    elif name == "adamw":
        opt = keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=wd or 0.0)
    else:
        raise ValueError(f"unknown optimizer {name!r}; choose from {sorted(OPTIMIZERS)}")
    if wd and variables is not None:
        opt.exclude_from_weight_decay(var_list=no_decay_variables(variables))
    return opt


def optimizer_from_config(cfg, schedule, variables):
    """The optimizer a training config asks for (``cfg.optimizer``, momentum, weight decay)."""
    return make_optimizer(cfg.optimizer, schedule, cfg.weight_decay, cfg.momentum, variables)
