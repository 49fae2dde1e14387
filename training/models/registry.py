"""Backbone registry: `get_backbone("mobilefacenet", embedding_size=128)`."""

from training.models.dlib_resnet import DlibResNet
from training.models.inception_resnet_v1 import InceptionResNetV1
from training.models.ir_se50 import IRSE50
from training.models.mobilefacenet import MobileFaceNet
from training.models.mobileid import MobileID

BACKBONES = {
    "dlib_resnet": DlibResNet,
    "inception_resnet_v1": InceptionResNetV1,
    "ir_se50": IRSE50,
    "mobilefacenet": MobileFaceNet,
    "mobileid": MobileID,
}


def get_backbone(name, embedding_size=None, input_shape=None, **kwargs):
    """Builds a backbone by registry name.

    Args:
        name: one of BACKBONES ("inception_resnet_v1", "ir_se50", "mobilefacenet", "mobileid").
        embedding_size: embedding length; None keeps the model's published default
            (mobilefacenet 128, mobileid 128, inception_resnet_v1 512, ir_se50 512,
            dlib_resnet 128).
        input_shape: (height, width, 3); None keeps the model's default
            (160x160 for inception_resnet_v1, 150x150 for dlib_resnet, 112x112 for the
            others).
        **kwargs: model options, e.g. `activation="relu"` for mobilefacenet.

    Returns:
        keras.Model: float32 (N, H, W, 3) RGB normalised as (x - 127.5) / 128 ->
        (N, embedding_size) un-normalised embeddings.

    Raises:
        ValueError: unknown name or invalid option.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose from {sorted(BACKBONES)}")
    if embedding_size is not None:
        kwargs["embedding_size"] = embedding_size
    return BACKBONES[name](input_shape=input_shape, **kwargs)
