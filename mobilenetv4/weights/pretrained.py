"""Pretrained tags: timm's published MobileNetV4 checkpoints and the preprocessing each expects.

The table is `pretrained_tags.csv` beside this file: values copied from timm 1.0.31
`timm/models/mobilenetv3.py` (`default_cfgs`), one row per tag, in timm's order. A tag names one
training run, e.g. "conv_medium.e500_r256_in1k"; the checkpoint itself is the `model.safetensors`
file of the Hugging Face repository `timm/mobilenetv4_<tag>` (we never download it for you).
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import os
from typing import Dict, List, Optional, Tuple

from mobilenetv4.cli import UserError

# timm's IMAGENET_DEFAULT_* and IMAGENET_INCEPTION_* are the package's "imagenet" and "inception"
# normalisations: one definition, in mobilenetv4.preprocessing.
from mobilenetv4.preprocessing import IMAGENET_MEAN, IMAGENET_STD, NORMALIZATIONS

IN12K_CLASSES = 11821  # ImageNet-12k, timm's filtered fall11 subset (the tags' num_classes)


@dataclasses.dataclass(frozen=True)
class PretrainedCfg:
    """What a checkpoint was trained with, so that inference feeds it the same kind of input."""

    model: str  # our model name, e.g. "conv_medium"
    tag: str  # training-run tag, e.g. "e500_r256_in1k"
    num_classes: int = 1000
    input_size: int = 224  # square train (and default eval) resolution
    test_input_size: Optional[int] = None  # timm's recommended larger eval resolution
    crop_pct: float = 0.875  # resize shorter side to size / crop_pct, then centre-crop
    test_crop_pct: Optional[float] = None
    interpolation: str = "bicubic"
    mean: Tuple[float, float, float] = IMAGENET_MEAN  # on [0, 1] pixels
    std: Tuple[float, float, float] = IMAGENET_STD

    @property
    def name(self) -> str:
        return f"{self.model}.{self.tag}"

    @property
    def hf_hub_id(self) -> str:
        """The Hugging Face repository holding this checkpoint's model.safetensors."""
        return f"timm/mobilenetv4_{self.name}"

    @property
    def normalization(self) -> Optional[str]:
        """The mobilenetv4.preprocessing name of this tag's mean/std ("imagenet" | "inception"), or
        None if it is neither."""
        for name, pair in NORMALIZATIONS.items():
            if pair is not None and pair == (tuple(self.mean), tuple(self.std)):
                return name
        return None

    def eval_size_and_crop(self, test: bool = False) -> Tuple[int, float]:
        if test and self.test_input_size:
            return self.test_input_size, self.test_crop_pct or self.crop_pct
        return self.input_size, self.crop_pct


def _read_tags(path: str) -> List[PretrainedCfg]:
    """The rows of pretrained_tags.csv (one per timm tag, in timm's order) as configs."""
    cfgs = []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            mean, std = NORMALIZATIONS[row["normalization"]]
            cfgs.append(
                PretrainedCfg(
                    model=row["model"],
                    tag=row["tag"],
                    num_classes=int(row["num_classes"]),
                    input_size=int(row["input_size"]),
                    test_input_size=int(row["test_input_size"]) if row["test_input_size"] else None,
                    crop_pct=float(row["crop_pct"]),
                    test_crop_pct=float(row["test_crop_pct"]) if row["test_crop_pct"] else None,
                    interpolation=row["interpolation"],
                    mean=mean,
                    std=std,
                )
            )
    return cfgs


# Order matters: the first tag of a model is its default (as in timm).
_CFGS: List[PretrainedCfg] = _read_tags(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrained_tags.csv")
)
_BY_NAME: Dict[str, PretrainedCfg] = {c.name: c for c in _CFGS}


def list_pretrained(model: Optional[str] = None) -> List[str]:
    """Full tag names ("model.tag"), optionally only those of one model, default tag first."""
    return [c.name for c in _CFGS if model is None or c.model == model]


def get_pretrained_cfg(name: str) -> PretrainedCfg:
    """The config of a full tag name ("conv_medium.e500_r256_in1k", timm's "mobilenetv4_" prefix
    allowed) or of a bare model name (its default tag)."""
    key = name[len("mobilenetv4_") :] if name.startswith("mobilenetv4_") else name
    if key in _BY_NAME:
        return _BY_NAME[key]
    defaults = [c for c in _CFGS if c.model == key]
    if defaults:
        return defaults[0]
    close = difflib.get_close_matches(key, list(_BY_NAME) + sorted({c.model for c in _CFGS}), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UserError(
        f"unknown pretrained tag {name!r}.{hint} Known tags: {', '.join(list_pretrained())}."
    )


def resolve_pretrained_cfg(
    model: str, tag: Optional[str] = None, num_classes: Optional[int] = None
) -> PretrainedCfg:
    """Pick the config for `model`: the given tag, else the first tag whose class count matches
    the checkpoint's (so an ImageNet-12k file gets a 12k tag), else the model's default tag, else
    a generic config (timm's defaults) for models without published weights."""
    if tag:
        cfg = get_pretrained_cfg(tag if "." in tag else f"{model}.{tag}")
        if cfg.model != model:
            raise UserError(
                f"pretrained tag {cfg.name!r} belongs to model {cfg.model!r}, "
                f"not {model!r}; pass a tag from: {', '.join(list_pretrained(model))}."
            )
        return cfg
    candidates = [c for c in _CFGS if c.model == model]
    matching = [c for c in candidates if num_classes is None or c.num_classes == num_classes]
    if matching:
        return matching[0]
    base = candidates[0] if candidates else PretrainedCfg(model=model, tag="custom")
    return dataclasses.replace(base, tag="custom", num_classes=num_classes or base.num_classes)
