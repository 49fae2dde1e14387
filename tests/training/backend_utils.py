"""Backend-neutral helpers for the model, head and loss tests (TensorFlow or JAX)."""

import keras
import numpy as np


def gradient(fn, *args):
    """Gradients of the scalar `fn(*args)` with respect to every argument, as numpy arrays.

    Uses tf.GradientTape on the TensorFlow backend and jax.grad on JAX.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tensors = [tf.convert_to_tensor(a) for a in args]
        with tf.GradientTape() as tape:
            for t in tensors:
                tape.watch(t)
            value = fn(*tensors)
        return [np.asarray(g) for g in tape.gradient(value, tensors)]
    if backend == "jax":
        import jax

        grads = jax.grad(lambda *a: fn(*a), argnums=tuple(range(len(args))))(*args)
        return [np.asarray(g) for g in grads]
    raise NotImplementedError(f"no gradient helper for the {backend} backend")


def variables_gradient(fn, variables):
    """Gradients of the scalar `fn()` with respect to Keras variables (a layer's weights)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            value = fn()
        return [np.asarray(g) for g in tape.gradient(value, list(variables))]
    if backend == "jax":
        import jax

        values = [v.value for v in variables]

        def wrapped(vals):
            with keras.StatelessScope(state_mapping=list(zip(variables, vals))):
                return fn()

        return [np.asarray(g) for g in jax.grad(wrapped)(values)]
    raise NotImplementedError(f"no gradient helper for the {backend} backend")
