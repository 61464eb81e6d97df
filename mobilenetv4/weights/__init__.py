"""Import of timm's MobileNetV4 checkpoints (safetensors) with outputs equal to timm's.

    model = mobilenetv4.create_model("conv_medium", weights="model.safetensors")
    logits = model(model.preprocess(images))

See docs/weights.md. Nothing here needs torch. The names below are imported lazily, so the
TensorFlow-free parts (`python -m mobilenetv4.weights.parity --help`, the safetensors reader, the
tag table) load without TensorFlow.
"""

import importlib

_LAZY = {
    "CheckpointError": "safetensors_file",
    "read_safetensors": "safetensors_file",
    "LoadReport": "loader",
    "WeightMismatchError": "loader",
    "checkpoint_classes": "loader",
    "load_timm_state_dict": "loader",
    "load_timm_weights": "loader",
    "make_preprocess": "preprocessing",
    "PretrainedCfg": "pretrained",
    "get_pretrained_cfg": "pretrained",
    "list_pretrained": "pretrained",
    "resolve_pretrained_cfg": "pretrained",
    "timm_targets": "timm_keys",
}


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_LAZY)
