"""Our MobileNetV4 as a Model Garden backbone: `backbone: {type: mobilenetv4, mobilenetv4: {...}}`.

`register()` adds the builder to `official.vision.modeling.backbones.factory` under the key
`mobilenetv4`; it runs when `experiments.detection` is imported (never from `import mobilenetv4`)
and is idempotent. The backbone is `mobilenetv4.create_model(..., features_only=True)` with its
endpoints renamed to Model Garden's level keys: "2".."5" for strides 4..32 (the same keys Model
Garden's own MobileNet backbone returns), and `output_specs` {level: TensorShape} for the decoder.

Weights: `weights` names a tf_keras `.h5` (ImageNet-trained by `experiments.train`, or converted
from timm by `python -m mobilenetv4.convert`). Its build record supplies the padding, BN epsilon
and width it was made with; the file's model is rebuilt by `mobilenetv4.create_model(name,
weights=...)` (weights only, never `keras.models.load_model`) and each backbone layer takes the
weights of its namesake, so the backbone computes exactly the classifier's features.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

import tf_keras

from mobilenetv4.cli import UserError
from mobilenetv4.layers.common import init_arguments
from official.modeling import hyperparams
from official.vision.configs import backbones as mg_backbones
from official.vision.modeling.backbones import factory

KEY = "mobilenetv4"
# Model Garden level key -> our endpoint (level L has stride 2**L).
LEVELS = {"2": "stride_4", "3": "stride_8", "4": "stride_16", "5": "stride_32"}
ATTENTION_TYPES = ("mobile_mqa", "mqa", "mhsa")
PADDINGS = ("same", "symmetric")


@dataclasses.dataclass
class MobileNetV4(hyperparams.Config):
    """Config of our backbone (`task.model.backbone.mobilenetv4`).

    model_name: a registered name (`mobilenetv4.list_models()`).
    width_multiplier: channel multiplier; 0 keeps the architecture's own (1.0 for all but the
      _050/_075 variants). A weights file's recorded width must agree.
    stochastic_depth_rate: drop rate of the last block; block i of N drops rate * i / N (linear in
      depth, every block kind, as in classification). The paper's detectors use 0.2.
    attention_type: mobile_mqa (the paper's), mqa or mhsa; hybrids only.
    padding: "" = "same" unless a weights file records otherwise (timm weights need "symmetric").
    bn_epsilon / bn_momentum: 0 = follow `task.model.norm_activation` (which the FPN and head use);
      a weights file's recorded epsilon wins over that default (timm: 1e-5).
    weights: path of a tf_keras `.h5` of the same model (classifier or backbone), or "" for random
      initialisation.
    """

    model_name: str = "conv_medium"
    width_multiplier: float = 0.0
    stochastic_depth_rate: float = 0.0
    attention_type: str = "mobile_mqa"
    padding: str = ""
    bn_epsilon: float = 0.0
    bn_momentum: float = 0.0
    weights: str = ""


@dataclasses.dataclass
class Backbone(mg_backbones.Backbone):
    """Model Garden's backbone one-of with our `mobilenetv4` added (its other choices unchanged)."""

    mobilenetv4: MobileNetV4 = dataclasses.field(default_factory=MobileNetV4)


def check_model_name(name: str) -> str:
    import difflib

    from mobilenetv4 import specs

    names = sorted(specs.ARCHITECTURES)
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(
            f"unknown MobileNetV4 backbone {name!r}{hint}; "
            f"task.model.backbone.mobilenetv4.model_name is one of {', '.join(names)}"
        )
    return name


def resolve_build(cfg: MobileNetV4, norm_momentum: float, norm_epsilon: float) -> dict:
    """create_model keyword arguments for `cfg`, completed from the weights file's build record."""
    from mobilenetv4 import build_record

    check_model_name(cfg.model_name)
    if cfg.attention_type not in ATTENTION_TYPES:
        raise UserError(
            f"attention_type {cfg.attention_type!r} is not one of {', '.join(ATTENTION_TYPES)}"
        )
    if cfg.padding not in ("",) + PADDINGS:
        raise UserError(f"padding {cfg.padding!r} is not one of {', '.join(PADDINGS)}")
    if not 0.0 <= cfg.stochastic_depth_rate < 1.0:
        raise UserError(f"stochastic_depth_rate must be in [0, 1), got {cfg.stochastic_depth_rate}")
    if cfg.width_multiplier < 0:
        raise UserError(
            f"width_multiplier must be > 0 (or 0 for the default), got {cfg.width_multiplier}"
        )
    recorded = {}
    if cfg.weights:
        path = os.fspath(cfg.weights)
        if not path.endswith((".h5", ".hdf5")):
            raise UserError(
                f"backbone weights {path} must be a tf_keras .h5 file (convert timm "
                "checkpoints with python -m mobilenetv4.convert --output NAME.h5)"
            )
        if not os.path.isfile(path):
            raise UserError(f"backbone weights {path} do not exist")
        record = build_record.read_h5(path)
        build_record.check_compatible(
            record,
            cfg.model_name,
            {
                "width_multiplier": cfg.width_multiplier or None,
                "attention_type": cfg.attention_type,
            },
            path,
        )
        recorded = dict((record or {}).get("build", {}))
    build = dict(
        width_multiplier=cfg.width_multiplier or recorded.get("width_multiplier"),
        stochastic_depth_rate=cfg.stochastic_depth_rate,
        attention_type=cfg.attention_type,
        padding=cfg.padding or recorded.get("padding") or "same",
        bn_epsilon=cfg.bn_epsilon or recorded.get("bn_epsilon") or norm_epsilon,
        bn_momentum=cfg.bn_momentum or recorded.get("bn_momentum") or norm_momentum,
    )
    return build


def load_backbone_weights(
    features: tf_keras.Model, path: str, model_name: str, build: dict
) -> None:
    """Copies the weights of an .h5 (a classifier's or a backbone's, in any tf_keras format) into
    our features model: the file's own model is rebuilt by `mobilenetv4.create_model(name,
    weights=path)` (its build record supplies classes, width, padding, epsilon; nothing in the file
    is deserialised as code) and every layer of `features` that has weights takes them from the
    layer of the same name, so the backbone computes exactly the classifier's features."""
    import mobilenetv4

    kwargs = {
        k: build[k]
        for k in ("width_multiplier", "padding", "bn_epsilon", "attention_type")
        if build.get(k) is not None
    }
    try:
        source = mobilenetv4.create_model(
            model_name, weights=path, input_shape=tuple(features.input_shape[1:]), **kwargs
        )
    except (ValueError, OSError, TypeError) as e:
        raise UserError(
            f"backbone weights {path} cannot be loaded into {model_name}: "
            f"{' '.join(str(e).split())[:300]}"
        ) from None
    names = {layer.name for layer in source.layers}
    missing = [layer.name for layer in features.layers if layer.weights and layer.name not in names]
    if missing:
        raise UserError(
            f"backbone weights {path} lack layers {', '.join(missing[:4])}"
            f"{' ...' if len(missing) > 4 else ''}; they are not weights of this backbone"
        )
    for layer in features.layers:
        if layer.weights:
            try:
                layer.set_weights(source.get_layer(layer.name).get_weights())
            except ValueError as e:
                raise UserError(
                    f"backbone weights {path} do not fit layer {layer.name}: "
                    f"{' '.join(str(e).split())[:200]}"
                ) from None


class MobileNetV4Backbone(tf_keras.Model):
    """`mobilenetv4.create_model(name, features_only=True)` with Model Garden's level keys."""

    def __init__(
        self,
        model_name: str = "conv_medium",
        input_specs: Optional[tf_keras.layers.InputSpec] = None,
        width_multiplier: Optional[float] = None,
        stochastic_depth_rate: float = 0.0,
        attention_type: str = "mobile_mqa",
        padding: str = "same",
        bn_epsilon: float = 1e-3,
        bn_momentum: float = 0.99,
        kernel_regularizer=None,
        weights: Optional[str] = None,
        **kwargs,
    ):
        config = init_arguments(locals())  # first: every local is still an argument
        del config["input_specs"]  # from_config rebuilds for any input size
        options = {k: v for k, v in config.items() if k not in ("model_name", "weights")}
        import mobilenetv4

        check_model_name(model_name)
        input_specs = input_specs or tf_keras.layers.InputSpec(shape=[None, None, None, 3])
        shape = tuple(input_specs.shape[1:])
        features = mobilenetv4.create_model(
            model_name, features_only=True, input_shape=shape, **options
        )
        if weights:
            load_backbone_weights(features, weights, model_name, options)
        inputs = tf_keras.Input(shape=shape, name="image")
        endpoints = features(inputs)
        outputs = {level: endpoints[name] for level, name in LEVELS.items()}
        self._config_dict = config
        self._input_specs = input_specs
        self._output_specs = {level: t.get_shape() for level, t in outputs.items()}
        super().__init__(
            inputs=inputs, outputs=outputs, name=f"mobilenetv4_{model_name}_backbone", **kwargs
        )

    @property
    def features(self) -> tf_keras.Model:
        """Our features model inside (endpoint names stride_4..stride_32)."""
        return self.layers[1]

    @property
    def output_specs(self):
        """{level: TensorShape} of the outputs, levels "2".."5" (Model Garden's convention)."""
        return self._output_specs

    def get_config(self):
        return dict(self._config_dict)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**config)


def build_mobilenetv4(
    input_specs: tf_keras.layers.InputSpec,
    backbone_config: hyperparams.Config,
    norm_activation_config: hyperparams.Config,
    l2_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
    **unused,
) -> tf_keras.Model:
    """Model Garden backbone builder for `type: mobilenetv4`."""
    if backbone_config.type != KEY:
        raise ValueError(f"backbone type {backbone_config.type!r} is not {KEY!r}")
    cfg = backbone_config.get()
    build = resolve_build(
        cfg, norm_activation_config.norm_momentum, norm_activation_config.norm_epsilon
    )
    return MobileNetV4Backbone(
        cfg.model_name,
        input_specs,
        kernel_regularizer=l2_regularizer,
        weights=cfg.weights or None,
        **build,
    )


def register() -> None:
    """Registers the builder under `mobilenetv4` (a second call is a no-op)."""
    registered = factory._REGISTERED_BACKBONE_CLS  # pylint: disable=protected-access
    current = registered.get(KEY)
    if current is build_mobilenetv4:
        return
    if getattr(current, "__module__", None) == __name__:  # this module, reloaded
        registered[KEY] = build_mobilenetv4
        return
    if KEY in registered:
        raise RuntimeError(f"another backbone is already registered as {KEY!r}: {registered[KEY]}")
    factory.register_backbone_builder(KEY)(build_mobilenetv4)


__all__ = [
    "Backbone",
    "KEY",
    "LEVELS",
    "MobileNetV4",
    "MobileNetV4Backbone",
    "build_mobilenetv4",
    "load_backbone_weights",
    "register",
    "resolve_build",
]
