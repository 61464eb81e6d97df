"""The one model-name grammar, shared by export, roofline, benchmarks and comparisons.

    NAME[@H[xW]]              a registered MobileNetV4 (`mobilenetv4.list_models()`), optionally
                              at a resolution: conv_small, conv_large@256, hybrid_medium@256x192
    keras:NAME[@H[xW]]        a keras.applications model, e.g. keras:mobilenet_v2_100
    model_garden:NAME[@H[xW]] a Model Garden backbone, e.g. model_garden:MobileNetV4ConvSmall

Without a resolution, a MobileNetV4 gets its `Architecture.default_size` (the only place default
resolutions live) and other sources their own default (224 unless the tool knows better).
Parsing needs no TensorFlow; `mobilenetv4.roofline.zoo.resolve` builds a parsed name (all three
sources) and `tflite.models.build` adds weights and overrides.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Optional

from mobilenetv4.cli import UserError

SOURCES = ("mobilenetv4", "keras", "model_garden")
_SIZE = re.compile(r"^(\d+)(?:x(\d+))?$")


@dataclasses.dataclass(frozen=True)
class ModelRef:
    source: str  # one of SOURCES
    name: str
    size: Optional[tuple[int, int]]  # (H, W) if given in the name

    @property
    def spec(self) -> str:
        prefix = "" if self.source == "mobilenetv4" else self.source + ":"
        suffix = f"@{self.size[0]}x{self.size[1]}" if self.size else ""
        return f"{prefix}{self.name}{suffix}"

    def resolution(self, fallback: int = 224) -> tuple[int, int]:
        """The explicit size, else the architecture's default (MobileNetV4), else `fallback`."""
        if self.size:
            return self.size
        if self.source == "mobilenetv4":
            return default_resolution(self.name)
        return (fallback, fallback)


def default_resolution(name: str) -> tuple[int, int]:
    """(H, W) default of a registered MobileNetV4, from its Architecture."""
    from mobilenetv4 import specs

    arch = specs.get(name)
    size = arch.default_size
    return (size, size) if isinstance(size, int) else tuple(size)[:2]


def parse(text: str, *, check: bool = True) -> ModelRef:
    """'hybrid_medium@256x192' -> ModelRef('mobilenetv4', 'hybrid_medium', (256, 192)).
    `check` verifies that a MobileNetV4 name is registered (with a did-you-mean)."""
    text = str(text).strip()
    if not text:
        raise UserError("empty model name; give e.g. conv_small or keras:mobilenet_v2_100")
    source, name = "mobilenetv4", text
    if ":" in text:
        source, name = text.split(":", 1)
        if source not in SOURCES[1:]:
            raise UserError(
                f"unknown model source {source!r} in {text!r}; use NAME, keras:NAME or "
                "model_garden:NAME"
            )
    size = None
    if "@" in name:
        name, _, size_text = name.partition("@")
        m = _SIZE.match(size_text)
        if not m:
            raise UserError(f"bad resolution {size_text!r} in {text!r}; write NAME@H or NAME@HxW")
        h = int(m.group(1))
        w = int(m.group(2) or h)
        if h < 32 or w < 32:
            raise UserError(f"resolution {h}x{w} in {text!r} is below the 32x32 minimum")
        size = (h, w)
    if not name:
        raise UserError(f"no model name in {text!r}")
    if check and source == "mobilenetv4":
        from mobilenetv4 import specs

        specs.get(name)
    return ModelRef(source, name, size)


def parse_list(items) -> list[ModelRef]:
    """A comma-separated string or a list of specs -> ModelRefs."""
    if isinstance(items, str):
        items = [s for s in items.split(",") if s.strip()]
    return [parse(item) for item in items]
