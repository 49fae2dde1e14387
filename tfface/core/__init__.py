"""Numpy-only core shared by the Keras side and the TensorFlow-free edge runtime."""
