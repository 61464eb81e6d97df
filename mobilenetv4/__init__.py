"""MobileNetV4 (Qin et al., 2024) for tf_keras.

    import mobilenetv4
    model = mobilenetv4.create_model("conv_small")          # logits, 224x224 input
    mobilenetv4.list_models()

The model functions are imported lazily, so `mobilenetv4.specs`, `mobilenetv4.cli` and the other
TensorFlow-free modules (and every CLI's `--help`) load without TensorFlow.
"""

import importlib

__version__ = "0.1.0"

_LAZY = {
    "create_model": "mobilenetv4.registry",
    "get_architecture": "mobilenetv4.registry",
    "list_models": "mobilenetv4.registry",
    "layers": "mobilenetv4.layers",
}


def __getattr__(name):
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        value = module if name == "layers" else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mobilenetv4' has no attribute {name!r}")


def custom_objects():
    """The layer classes, for `tf_keras.models.load_model(..., custom_objects=...)` (rarely needed:
    importing mobilenetv4.layers registers them)."""
    from mobilenetv4 import layers  # pylint: disable=g-import-not-at-top
    from mobilenetv4.layers.anti_alias import BlurPool2D  # pylint: disable=g-import-not-at-top

    return {
        cls.__name__: cls
        for cls in (
            layers.ConvBN,
            layers.FusedIB,
            layers.UniversalInvertedBottleneck,
            layers.MobileAttentionBlock,
            layers.MultiQueryAttention2D,
            layers.LayerScale,
            layers.StochasticDepth,
            BlurPool2D,
        )
    }


__all__ = ["create_model", "custom_objects", "get_architecture", "layers", "list_models"]
