"""The base of the project's backbones: functional Keras models whose config is their
constructor arguments (the keras-hub pattern), so ``.keras`` files rebuild them by calling the
constructor again."""

import keras


class EmbeddingBackbone(keras.Model):
    """A functional embedding network; subclasses build the graph in ``__init__``, call
    ``super().__init__(inputs=..., outputs=...)`` and then :meth:`remember_config` with their
    constructor arguments."""

    def remember_config(self, **config):
        """Keep the constructor arguments for :meth:`get_config` and as attributes
        (``input_shape`` is stored as ``input_shape_hw3``: Keras owns ``input_shape``)."""
        self._constructor_config = {k: list(v) if isinstance(v, tuple) else v
                                    for k, v in config.items()}
        for key, value in config.items():
            setattr(self, "input_shape_hw3" if key == "input_shape" else key, value)

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, **self._constructor_config}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
