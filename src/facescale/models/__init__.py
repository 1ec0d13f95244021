"""Face backbones by name: IResNet (r18..r200), MobileFaceNet (mbf, mbf_large, mbf_tiny), ViT.

``build_backbone("r50", embedding_size=512)`` or ``backbone_from_config(cfg.model)``;
``facescale models`` lists every name with its parameters and multiply-accumulates.
"""

from facescale.models import iresnet, mobilefacenet, vit  # noqa: F401  (registers the backbones)
from facescale.models.base import BACKBONES, FaceBackbone
from facescale.models.factory import (
    BackboneSpec,
    backbone_from_config,
    backbone_options,
    build_backbone,
    spec_from_config,
)

__all__ = [
    "BACKBONES",
    "BackboneSpec",
    "FaceBackbone",
    "backbone_from_config",
    "backbone_options",
    "build_backbone",
    "spec_from_config",
]
