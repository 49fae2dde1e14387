"""Edge runtime: numpy + a TFLite interpreter, no TensorFlow."""
