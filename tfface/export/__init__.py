"""Exporters from the training side (TensorFlow) to the edge runtime (TFLite).

Modules here import TensorFlow and are run once, by hand or by a build step; the files they
produce are read by :mod:`tflite` without TensorFlow.
"""
