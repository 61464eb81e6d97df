"""Import of timm's MobileNetV4 checkpoints (safetensors) with outputs equal to timm's.

    model = mobilenetv4.create_model("conv_medium", weights="model.safetensors")
    logits = model(model.preprocess(images))

See docs/weights.md. Nothing here needs torch.
"""
from mobilenetv4.weights.loader import (
    LoadReport, WeightMismatchError, checkpoint_classes, load_timm_state_dict, load_timm_weights)
from mobilenetv4.weights.preprocessing import make_preprocess
from mobilenetv4.weights.pretrained import (
    PretrainedCfg, get_pretrained_cfg, list_pretrained, resolve_pretrained_cfg)
from mobilenetv4.weights.safetensors_file import CheckpointError, read_safetensors
from mobilenetv4.weights.timm_keys import timm_targets

__all__ = [
    "CheckpointError", "LoadReport", "PretrainedCfg", "WeightMismatchError",
    "checkpoint_classes", "get_pretrained_cfg", "list_pretrained", "load_timm_state_dict",
    "load_timm_weights", "make_preprocess", "read_safetensors", "resolve_pretrained_cfg",
    "timm_targets",
]
