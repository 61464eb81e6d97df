"""MobileNetV4 building blocks as serialisable tf_keras layers (registered as "mobilenetv4>...")."""

from mobilenetv4.layers.attention import (
    ATTENTION_TYPES,
    MobileAttentionBlock,
    MultiQueryAttention2D,
)
from mobilenetv4.layers.common import LayerScale, StochasticDepth, make_divisible
from mobilenetv4.layers.conv_bn import ConvBN
from mobilenetv4.layers.uib import FusedIB, UniversalInvertedBottleneck, uib_kind

__all__ = [
    "ATTENTION_TYPES",
    "ConvBN",
    "FusedIB",
    "LayerScale",
    "MobileAttentionBlock",
    "MultiQueryAttention2D",
    "StochasticDepth",
    "UniversalInvertedBottleneck",
    "make_divisible",
    "uib_kind",
]
