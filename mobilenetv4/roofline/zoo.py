"""The one model resolver: a model name (the grammar of `mobilenetv4.model_names`) -> a buildable
float tf_keras classifier. Used by the roofline analysis here and, through `tflite.models`, by the
export, the latency measurement, the benchmarks' tables and the comparisons.

    NAME[@H[xW]]               a registered MobileNetV4: conv_small, conv_large@256, hybrid_medium@256x192
    keras:NAME[@H[xW]]         a tf_keras application (random weights), by the family names below
                               (keras:mobilenet_v2_140) or the tf_keras function (keras:MobileNetV3Small)
    model_garden:NAME[@H[xW]]  Model Garden's MobileNetV4 backbone + a dense classifier (random weights):
                               model_garden:conv_small or model_garden:MobileNetV4ConvSmall

Default resolutions: a MobileNetV4 (ours or Model Garden's) gets its `Architecture.default_size`,
the only place MobileNetV4 resolutions live; other families keep their own published input sizes
(EfficientNet's B0-B7 grow with the model), else 224. For the keras family names the `keras:` prefix
may be left out (`mobilenet_v2_100`): they cannot be mistaken for a MobileNetV4 name.

This module belongs to the model library: it imports no tool (`tflite`, `experiments`).
"""

import dataclasses
import math
import os
import re
from typing import Callable, Dict, Optional, Tuple

from mobilenetv4 import model_names
from mobilenetv4.cli import UserError

# Published ImageNet-1k top-1 (%), used only to place models on the accuracy axis of Fig. 2.
# Sources: "T6" = paper Table 6 (MobileNets retrained with modern recipes); "MNv4 Sec.5" = paper
# Sec. 5 text for MobileNetV3-L; "keras" = tf_keras.applications module docstrings (original
# checkpoints); "EffNet" = Tan & Le 2019 Table 2; "ConvNeXt" = Liu et al. 2022 Table 1.
PUBLISHED_TOP1 = {
    "conv_small": (73.8, "T6"),
    "conv_medium": (79.9, "T6"),
    "hybrid_medium": (80.7, "T6"),
    "conv_large": (82.9, "T6"),
    "hybrid_large": (83.4, "T6"),
    "mobilenet_v1_100": (74.0, "T6"),
    "mobilenet_v1_075": (68.4, "keras"),
    "mobilenet_v1_050": (63.7, "keras"),
    "mobilenet_v1_025": (50.6, "keras"),
    "mobilenet_v2_050": (66.0, "T6"),
    "mobilenet_v2_100": (73.4, "T6"),
    "mobilenet_v2_150": (76.8, "T6"),
    "mobilenet_v2_200": (78.4, "T6"),
    "mobilenet_v2_075": (69.8, "keras"),
    "mobilenet_v2_140": (75.0, "keras"),
    "mobilenet_v3_large_050": (69.2, "T6"),
    "mobilenet_v3_large_100": (75.5, "MNv4 Sec.5"),
    "mobilenet_v3_large_075": (73.3, "keras"),
    "mobilenet_v3_small_100": (68.1, "keras"),
    "mobilenet_v3_small_075": (65.4, "keras"),
    "efficientnet_b0": (77.1, "EffNet"),
    "efficientnet_b1": (79.1, "EffNet"),
    "efficientnet_b2": (80.1, "EffNet"),
    "efficientnet_b3": (81.6, "EffNet"),
    "convnext_tiny": (82.1, "ConvNeXt"),
    "convnext_small": (83.1, "T6"),
}

# Input sizes of other families (not MobileNetV4 facts): EfficientNet (Tan & Le 2019, Table 1 /
# keras.applications defaults) and EfficientNetV2 (keras.applications defaults).
_EFFNET_RES = {
    "b0": 224,
    "b1": 240,
    "b2": 260,
    "b3": 300,
    "b4": 380,
    "b5": 456,
    "b6": 528,
    "b7": 600,
}
_EFFNET_V2_RES = {"b0": 224, "b1": 240, "b2": 260, "b3": 300, "s": 384, "m": 480, "l": 480}
_CONVNEXT = {
    "tiny": "ConvNeXtTiny",
    "small": "ConvNeXtSmall",
    "base": "ConvNeXtBase",
    "large": "ConvNeXtLarge",
}
OTHER_DEFAULT_SIZE = 224

# Model Garden's MobileNetV4 backbones (official.vision.modeling.backbones.mobilenet model_id).
MODEL_GARDEN_IDS = {
    "conv_small": "MobileNetV4ConvSmall",
    "conv_medium": "MobileNetV4ConvMedium",
    "conv_large": "MobileNetV4ConvLarge",
    "hybrid_medium": "MobileNetV4HybridMedium",
    "hybrid_large": "MobileNetV4HybridLarge",
}

EXAMPLES = (
    "conv_small, conv_medium@320, hybrid_large, mobilenet_v1_100, mobilenet_v2_140, "
    "mobilenet_v3_large_100, mobilenet_v3_small_075, mobilenet_v3_large_minimal_100, "
    "efficientnet_b0, efficientnet_v2_b0, convnext_tiny, model_garden:conv_small"
)

# One float32 forward pass holds an op's inputs and output at once, plus framework workspace.
FORWARD_MEMORY_FACTOR = 3
FLOAT_BYTES = 4


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A resolved model name: what it is, at which resolution, and how to build it."""

    name: str  # without source prefix or size: conv_small, mobilenet_v2_100
    source: str  # mobilenetv4 | keras | model_garden
    family: str
    resolution: Tuple[int, int]  # (H, W)
    builder: Callable = dataclasses.field(repr=False, compare=False, default=None)
    has_attention: bool = False  # attention matmuls (MobileNetV4 hybrids)

    @property
    def size_text(self) -> str:
        """'224' for a square input, '256x192' otherwise (the CSV `resolution` column)."""
        h, w = self.resolution
        return f"{h}" if h == w else f"{h}x{w}"

    @property
    def display_name(self) -> str:
        """The name as written in tables: a bare name for ours and the keras family names."""
        if self.source == "model_garden" or (
            self.source == "keras" and not _keras_family(self.name)
        ):
            return f"{self.source}:{self.name}"
        return self.name

    @property
    def label(self) -> str:
        return f"{self.display_name}@{self.size_text}"

    @property
    def file_label(self) -> str:
        """The label as a file-name fragment."""
        return re.sub(r"[^A-Za-z0-9_.-]", "_", self.label)

    def build(self, classes: int = 1000, **kwargs):
        """A float tf_keras model at `resolution` (kwargs: `weights` and create_model overrides,
        MobileNetV4 only)."""
        if kwargs and self.source != "mobilenetv4":
            raise UserError(
                f"{', '.join(sorted(kwargs))} apply to our MobileNetV4 models only, "
                f"not {self.label}"
            )
        return self.builder((*self.resolution, 3), classes, **kwargs)


def _alpha(digits: str) -> float:
    return int(digits) / 100.0


def _keras_family(name: str) -> Optional[Tuple[str, int, Callable]]:
    """(family, default resolution, ctor(apps, input_shape, common)) of a keras family name."""
    if m := re.fullmatch(r"mobilenet_v1_(\d{3})", name):
        return (
            "MobileNetV1",
            224,
            lambda apps, s, kw: apps.MobileNet(input_shape=s, alpha=_alpha(m[1]), **kw),
        )
    if m := re.fullmatch(r"mobilenet_v2_(\d{3})", name):
        return (
            "MobileNetV2",
            224,
            lambda apps, s, kw: apps.MobileNetV2(input_shape=s, alpha=_alpha(m[1]), **kw),
        )
    if m := re.fullmatch(r"mobilenet_v3_(small|large)(_minimal)?_(\d{3})", name):
        # No in-graph Rescaling: MobileNetV4 has none either, so both start at the first conv.
        return (
            "MobileNetV3",
            224,
            lambda apps, s, kw: getattr(
                apps, "MobileNetV3Small" if m[1] == "small" else "MobileNetV3Large"
            )(
                input_shape=s,
                alpha=_alpha(m[3]),
                minimalistic=bool(m[2]),
                include_preprocessing=False,
                **kw,
            ),
        )
    if m := re.fullmatch(r"efficientnet_(b[0-7])", name):
        return (
            "EfficientNet",
            _EFFNET_RES[m[1]],
            lambda apps, s, kw: getattr(apps, f"EfficientNet{m[1].upper()}")(input_shape=s, **kw),
        )
    if m := re.fullmatch(r"efficientnet_v2_(b[0-3]|s|m|l)", name):
        return (
            "EfficientNetV2",
            _EFFNET_V2_RES[m[1]],
            lambda apps, s, kw: getattr(apps, f"EfficientNetV2{m[1].upper()}")(
                input_shape=s, include_preprocessing=False, **kw
            ),
        )
    if m := re.fullmatch(r"convnext_(tiny|small|base|large)", name):
        return (
            "ConvNeXt",
            224,
            lambda apps, s, kw: getattr(apps, _CONVNEXT[m[1]])(
                input_shape=s, include_preprocessing=False, **kw
            ),
        )
    return None


def _keras_spec(name: str, size) -> ModelSpec:
    family = _keras_family(name)
    if family is not None:
        fam, default, ctor = family
    elif re.fullmatch(r"[A-Z][A-Za-z0-9]*", name):  # a tf_keras.applications function name
        fam, default = name, OTHER_DEFAULT_SIZE

        def ctor(apps, s, kw):
            fn = getattr(apps, name, None)
            if fn is None or not callable(fn):
                raise UserError(f"tf_keras.applications has no model {name!r}")
            extra = {"include_preprocessing": False} if "MobileNetV3" in name else {}
            return fn(input_shape=s, classifier_activation=None, **extra, **kw)
    else:
        raise UserError(
            f"unknown keras model {name!r}; use a family name such as mobilenet_v2_100, "
            "efficientnet_b0, convnext_tiny or a tf_keras.applications function such "
            "as keras:MobileNetV3Small"
        )

    def build(shape, classes):
        import tf_keras as keras

        return ctor(
            keras.applications, shape, dict(weights=None, include_top=True, classes=classes)
        )

    return ModelSpec(name, "keras", fam, size or (default, default), build)


def _mobilenetv4_spec(name: str, size) -> ModelSpec:
    from mobilenetv4 import specs

    arch = specs.get(name)
    attention = any(isinstance(b, specs.MobileMQA) for stage in arch.stages for b in stage)

    def build(shape, classes, **kwargs):
        import mobilenetv4

        return mobilenetv4.create_model(name, input_shape=shape, classes=classes, **kwargs)

    return ModelSpec(
        name,
        "mobilenetv4",
        "MobileNetV4-Hybrid" if attention else "MobileNetV4-Conv",
        size or model_names.default_resolution(name),
        build,
        attention,
    )


def _model_garden_spec(name: str, size) -> ModelSpec:
    ours = next((k for k, v in MODEL_GARDEN_IDS.items() if name in (k, v)), None)
    if ours is None:
        raise UserError(
            f"Model Garden has no MobileNetV4 {name!r}; choose one of "
            f"{', '.join(MODEL_GARDEN_IDS)} (or its model_id, e.g. MobileNetV4ConvSmall)"
        )
    size = size or model_names.default_resolution(ours)
    if ours.startswith("hybrid") and size[0] != size[1]:
        raise UserError(
            "Model Garden's hybrid models take square inputs only (its K/V downsampling "
            "uses the height for both sides)"
        )

    def build(shape, classes):
        """Model Garden's backbone (its own head: 1x1 conv 960, pool, 1x1 conv 1280) and a dense
        classifier; Model Garden ships no classifier of its own for MobileNetV4."""
        import tf_keras as keras

        try:
            from official.vision.modeling.backbones import mobilenet
        except ImportError as e:
            raise UserError(
                f"model_garden:{name} needs tf-models-official (pip install "
                f"tf-models-official): {e}"
            ) from None
        inputs = keras.Input(shape=shape, batch_size=1)
        backbone = mobilenet.MobileNet(
            model_id=MODEL_GARDEN_IDS[ours], input_specs=keras.layers.InputSpec(shape=[1, *shape])
        )
        features = backbone(inputs)
        x = keras.layers.Flatten()(features[max(features, key=int)])
        return keras.Model(
            inputs, keras.layers.Dense(classes, name="classifier")(x), name=f"model_garden_{ours}"
        )

    family = (
        "MobileNetV4-Hybrid (Model Garden)"
        if ours.startswith("hybrid")
        else "MobileNetV4-Conv (Model Garden)"
    )
    return ModelSpec(ours, "model_garden", family, size, build, ours.startswith("hybrid"))


def resolve(text: str) -> ModelSpec:
    """Parses `text` with the package's model-name grammar and resolves it; a UserError (a
    ValueError) names the valid choices."""
    ref = model_names.parse(text, check=False)
    from mobilenetv4 import specs

    if ref.source == "keras":
        spec = _keras_spec(ref.name, ref.size)
    elif ref.source == "model_garden":
        spec = _model_garden_spec(ref.name, ref.size)
    elif ref.name not in specs.ARCHITECTURES and _keras_family(ref.name):
        spec = _keras_spec(ref.name, ref.size)  # a bare keras family name
    else:
        try:
            spec = _mobilenetv4_spec(ref.name, ref.size)
        except UserError as e:
            raise UserError(
                f"{e}; or a keras model such as mobilenet_v2_100 / "
                "keras:MobileNetV3Small, or model_garden:NAME"
            ) from None
    check_input_memory(*spec.resolution, spec.label)
    return spec


def parse_list(items) -> list:
    """Comma-separated model specs (or a list of them) -> list of ModelSpec (duplicates removed,
    order kept)."""
    if isinstance(items, str):
        items = items.split(",")
    items = [s.strip() for s in items if s and s.strip()]
    if not items:
        raise UserError("no models given; pass e.g. --models conv_small,mobilenet_v2_100")
    out: Dict[str, ModelSpec] = {}
    for s in items:
        ms = resolve(s)
        out.setdefault(ms.label, ms)
    return list(out.values())


def available_memory_bytes() -> int:
    """MemAvailable from /proc/meminfo (else the physical memory)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def forward_bytes(model) -> int:
    """Estimated memory of one float32 forward pass of a batch of one: the largest layer's inputs
    plus output (plus an attention block's logits), times FORWARD_MEMORY_FACTOR, from the model's
    symbolic shapes (nothing is run)."""

    def elements(shape):
        shapes = shape if shape and isinstance(shape[0], (tuple, list)) else [shape]
        return sum(math.prod(1 if d is None else int(d) for d in s) for s in shapes if s)

    largest = 0
    for layer in model.layers:
        try:
            n = elements(layer.input_shape) + elements(layer.output_shape)
        except (AttributeError, RuntimeError, TypeError):
            continue
        largest = max(largest, n + attention_logits(layer))
    return largest * FLOAT_BYTES * FORWARD_MEMORY_FACTOR


def attention_logits(layer) -> int:
    """Elements of an attention block's logits [heads, n, m] (an intermediate, not an output,
    and the largest tensor of a hybrid at high resolution); 0 for other layers."""
    if not all(hasattr(layer, a) for a in ("num_heads", "kv_strides")):
        return 0
    _, h, w, _ = layer.input_shape
    s = layer.kv_strides
    return int(layer.num_heads) * int(h) * int(w) * math.ceil(int(h) / s) * math.ceil(int(w) / s)


def check_input_memory(height: int, width: int, what: str) -> None:
    """Refuses before anything is built when even the float32 input image alone and the stem's
    output (stride 2, at least 16 channels) cannot fit in memory."""
    need = (height * width * 3 + (height // 2) * (width // 2) * 16) * FLOAT_BYTES
    have = available_memory_bytes()
    if need > have:
        raise UserError(
            f"{what} at {height}x{width} needs at least {need / 2**30:.1f} GiB for one "
            f"image's activations, more than the {have / 2**30:.1f} GiB available; "
            "choose a smaller input size"
        )


def check_model_memory(model, what: str) -> None:
    """Refuses a model whose forward pass (estimated by `forward_bytes`) cannot fit in memory."""
    need, have = forward_bytes(model), available_memory_bytes()
    if need > have:
        h, w = model.input_shape[1:3]
        raise UserError(
            f"{what} at {h}x{w} needs about {need / 2**30:.1f} GiB for one image's "
            f"forward pass, more than the {have / 2**30:.1f} GiB available; choose a "
            "smaller input size"
        )
