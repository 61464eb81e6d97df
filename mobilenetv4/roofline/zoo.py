"""Models by name for roofline comparisons: MobileNetV4 and tf_keras applications (random weights).

A model spec is `name` or `name@resolution`, e.g. `conv_medium`, `mobilenet_v2_140@224`,
`efficientnet_b0`. Keras-application names carry the width multiplier x100 where the family has
one (`mobilenet_v1_150` = MobileNetV1 alpha 1.5).
"""
import dataclasses
import re
from typing import Callable, Dict, Optional, Tuple

import tf_keras as keras

# Train resolutions of the MobileNetV4 variants (paper Tables 11-15; timm default configs).
MNV4_RESOLUTION = {
    "conv_small": 224, "conv_small_050": 224, "conv_medium": 256, "conv_large": 384,
    "hybrid_medium": 256, "hybrid_medium_075": 224, "hybrid_large": 384, "hybrid_large_075": 256,
}

# Published ImageNet-1k top-1 (%), used only to place models on the accuracy axis of Fig. 2.
# Sources: "T6" = paper Table 6 (MobileNets retrained with modern recipes); "MNv4 Sec.5" = paper
# Sec. 5 text for MobileNetV3-L; "keras" = tf_keras.applications module docstrings (original
# checkpoints); "EffNet" = Tan & Le 2019 Table 2; "ConvNeXt" = Liu et al. 2022 Table 1.
PUBLISHED_TOP1 = {
    "conv_small": (73.8, "T6"), "conv_medium": (79.9, "T6"), "hybrid_medium": (80.7, "T6"),
    "conv_large": (82.9, "T6"), "hybrid_large": (83.4, "T6"),
    "mobilenet_v1_100": (74.0, "T6"), "mobilenet_v1_075": (68.4, "keras"),
    "mobilenet_v1_050": (63.7, "keras"), "mobilenet_v1_025": (50.6, "keras"),
    "mobilenet_v2_050": (66.0, "T6"), "mobilenet_v2_100": (73.4, "T6"),
    "mobilenet_v2_150": (76.8, "T6"), "mobilenet_v2_200": (78.4, "T6"),
    "mobilenet_v2_075": (69.8, "keras"), "mobilenet_v2_140": (75.0, "keras"),
    "mobilenet_v3_large_050": (69.2, "T6"), "mobilenet_v3_large_100": (75.5, "MNv4 Sec.5"),
    "mobilenet_v3_large_075": (73.3, "keras"), "mobilenet_v3_small_100": (68.1, "keras"),
    "mobilenet_v3_small_075": (65.4, "keras"),
    "efficientnet_b0": (77.1, "EffNet"), "efficientnet_b1": (79.1, "EffNet"),
    "efficientnet_b2": (80.1, "EffNet"), "efficientnet_b3": (81.6, "EffNet"),
    "convnext_tiny": (82.1, "ConvNeXt"), "convnext_small": (83.1, "T6"),
}

_EFFNET_RES = {"b0": 224, "b1": 240, "b2": 260, "b3": 300, "b4": 380, "b5": 456, "b6": 528,
               "b7": 600}
_EFFNET_V2_RES = {"b0": 224, "b1": 240, "b2": 260, "b3": 300, "s": 384, "m": 480, "l": 480}
_CONVNEXT = {"tiny": "ConvNeXtTiny", "small": "ConvNeXtSmall", "base": "ConvNeXtBase",
             "large": "ConvNeXtLarge"}

EXAMPLES = ("conv_small, conv_medium@320, hybrid_large, mobilenet_v1_100, mobilenet_v2_140, "
            "mobilenet_v3_large_100, mobilenet_v3_small_075, mobilenet_v3_large_minimal_100, "
            "efficientnet_b0, efficientnet_v2_b0, convnext_tiny")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str
    resolution: int
    build: Callable[[], keras.Model]
    has_attention: bool = False  # attention matmuls (MobileNetV4 hybrids)

    @property
    def label(self) -> str:
        return f"{self.name}@{self.resolution}"


def _alpha(digits: str) -> float:
    return int(digits) / 100.0


def _keras_app(name: str) -> Optional[Tuple[str, int, Callable[[Tuple], keras.Model]]]:
    """(family, default resolution, builder(input_shape)) for a keras-applications name."""
    apps = keras.applications
    common = dict(weights=None, include_top=True, classes=1000)
    if m := re.fullmatch(r"mobilenet_v1_(\d{3})", name):
        return "MobileNetV1", 224, lambda s: apps.MobileNet(input_shape=s, alpha=_alpha(m[1]),
                                                            **common)
    if m := re.fullmatch(r"mobilenet_v2_(\d{3})", name):
        return "MobileNetV2", 224, lambda s: apps.MobileNetV2(input_shape=s, alpha=_alpha(m[1]),
                                                              **common)
    if m := re.fullmatch(r"mobilenet_v3_(small|large)(_minimal)?_(\d{3})", name):
        ctor = apps.MobileNetV3Small if m[1] == "small" else apps.MobileNetV3Large
        # No in-graph Rescaling: MobileNetV4 has none either, so both start at the first conv.
        return "MobileNetV3", 224, lambda s: ctor(
            input_shape=s, alpha=_alpha(m[3]), minimalistic=bool(m[2]),
            include_preprocessing=False, **common)
    if m := re.fullmatch(r"efficientnet_(b[0-7])", name):
        ctor = getattr(apps, f"EfficientNet{m[1].upper()}")
        return "EfficientNet", _EFFNET_RES[m[1]], lambda s: ctor(input_shape=s, **common)
    if m := re.fullmatch(r"efficientnet_v2_(b[0-3]|s|m|l)", name):
        ctor = getattr(apps, f"EfficientNetV2{m[1].upper()}")
        return "EfficientNetV2", _EFFNET_V2_RES[m[1]], lambda s: ctor(
            input_shape=s, include_preprocessing=False, **common)
    if m := re.fullmatch(r"convnext_(tiny|small|base|large)", name):
        ctor = getattr(apps, _CONVNEXT[m[1]])
        return "ConvNeXt", 224, lambda s: ctor(input_shape=s, include_preprocessing=False,
                                               **common)
    return None


def _mnv4_names():
    import mobilenetv4  # the model library; imported lazily so formula code needs no model
    return list(mobilenetv4.list_models())


def resolve(spec: str) -> ModelSpec:
    """Parse `name[@resolution]` into a ModelSpec; raises ValueError naming valid choices."""
    name, _, res = spec.strip().partition("@")
    if res and not res.isdigit():
        raise ValueError(f"bad resolution in model spec {spec!r}; write name@224")
    resolution = int(res) if res else None
    if resolution is not None and resolution < 32:
        raise ValueError(f"resolution {resolution} in {spec!r} is too small; use >= 32")
    app = _keras_app(name)
    if app is not None:
        family, default_res, ctor = app
        r = resolution or default_res
        return ModelSpec(name, family, r, lambda: ctor((r, r, 3)))
    mnv4 = _mnv4_names()
    if name in mnv4:
        import mobilenetv4
        r = resolution or MNV4_RESOLUTION.get(name, 224)
        family = "MobileNetV4-Hybrid" if name.startswith("hybrid") else "MobileNetV4-Conv"
        return ModelSpec(name, family, r,
                         lambda: mobilenetv4.create_model(name, input_shape=(r, r, 3)),
                         has_attention=name.startswith("hybrid"))
    raise ValueError(f"unknown model {name!r}; choose a MobileNetV4 model ({', '.join(mnv4)}) "
                     f"or a keras application such as {EXAMPLES}")


def parse_list(text: str):
    """Comma-separated model specs -> list of ModelSpec (duplicates removed, order kept)."""
    specs = [s for s in (t.strip() for t in text.split(",")) if s]
    if not specs:
        raise ValueError("no models given; pass e.g. --models conv_small,mobilenet_v2_100")
    out: Dict[str, ModelSpec] = {}
    for s in specs:
        ms = resolve(s)
        out.setdefault(ms.label, ms)
    return list(out.values())
