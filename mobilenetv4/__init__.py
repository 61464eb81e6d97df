"""MobileNetV4 (Qin et al., 2024) for tf_keras.

    import mobilenetv4
    model = mobilenetv4.create_model("conv_small")          # logits, 224x224 input
    mobilenetv4.list_models()
"""
from mobilenetv4 import layers
from mobilenetv4.registry import create_model, get_architecture, list_models

__version__ = "0.1.0"


def custom_objects():
  """The layer classes, for `tf_keras.models.load_model(..., custom_objects=...)` (rarely needed:
  importing mobilenetv4 registers them)."""
  return {cls.__name__: cls for cls in (
      layers.ConvBN, layers.FusedIB, layers.UniversalInvertedBottleneck,
      layers.MobileAttentionBlock, layers.MultiQueryAttention2D, layers.LayerScale,
      layers.StochasticDepth)}


__all__ = ["create_model", "custom_objects", "get_architecture", "layers", "list_models"]
