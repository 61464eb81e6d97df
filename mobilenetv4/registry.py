"""Model names, `create_model` and `list_models` (timm-style registry over specs.ARCHITECTURES)."""

import os

from mobilenetv4 import builder, specs
from mobilenetv4.cli import UserError


def list_models():
    """Names accepted by `create_model`."""
    return sorted(specs.ARCHITECTURES)


def get_architecture(name):
    """The `Architecture` row table for `name`, or a ValueError listing the valid names.

    Args:
      name: one of `list_models()`.
    """
    return specs.get(name)


def create_model(name, weights=None, pretrained_tag=None, **overrides):
    """Builds a MobileNetV4 model by name.

    Args:
      name: one of `list_models()`.
      weights: None (random init); a tf_keras weights file (`model.save_weights`: `.h5`,
        `.weights.h5`, or a TF checkpoint prefix; or the weights of a whole-model `.keras` / `.h5`,
        whose architecture is never deserialised); or a timm checkpoint (`.safetensors`, see
        docs/weights.md), which also attaches `model.preprocess`. A weights file with a build
        record (written by `mobilenetv4.convert` and the trainer) supplies its build arguments and
        input size, and is refused when written for another model, class count, width or
        attention type.
      pretrained_tag: with a timm checkpoint, its tag (e.g. "e500_r256_in1k") if the path does
        not name it; it selects the preprocessing (`mobilenetv4.weights.list_pretrained()`).
      **overrides: keyword arguments of `builder.build_model`, with the keras.applications
        meanings: include_top, input_shape, pooling, classes, classifier_activation (None gives
        logits), dropout, width_multiplier, stochastic_depth_rate, bn_momentum, bn_epsilon,
        padding ("same" | "symmetric"), features_only, kernel_regularizer, attention_type
        ("mobile_mqa" | "mqa" | "mhsa", hybrids only), name.

    Returns:
      A functional `tf_keras.Model`.

    Raises:
      mobilenetv4.cli.UserError (a ValueError): a bad argument, or weights that do not fit.
    """
    allowed = builder.build_model.__kwdefaults__
    unknown = set(overrides) - set(allowed)
    if unknown:
        raise TypeError(
            f"create_model({name!r}) got unknown arguments {sorted(unknown)}; "
            f"allowed: {sorted(allowed)}"
        )
    arch = get_architecture(name)
    if weights is None:
        if pretrained_tag is not None:
            raise UserError(
                "pretrained_tag applies only to timm checkpoints (weights=*.safetensors)"
            )
        return builder.build_model(arch, **overrides)
    from mobilenetv4.weights import keras_file  # pylint: disable=g-import-not-at-top

    if not keras_file.is_keras_weights(weights):
        from mobilenetv4.weights.timm_model import create_from_timm  # pylint: disable=g-import-not-at-top

        return create_from_timm(
            name,
            weights,
            lambda **kw: builder.build_model(arch, **kw),
            pretrained_tag=pretrained_tag,
            **overrides,
        )
    if pretrained_tag is not None:
        raise UserError("pretrained_tag applies only to timm checkpoints (weights=*.safetensors)")
    # A build record (converted timm weights, trainer output) supplies the build arguments.
    build, record = keras_file.apply_record(name, weights, overrides, allowed)
    model = builder.build_model(arch, **build)
    keras_file.load_weights(model, weights)
    cfg = keras_file.pretrained_cfg_from_record(record) if record else None
    if cfg is not None:
        from mobilenetv4.weights.timm_model import attach_pretrained_cfg  # pylint: disable=g-import-not-at-top

        attach_pretrained_cfg(model, cfg)
    return model


def load_weights(model, path):
    """Loads a tf_keras weights file into `model` (weights only; see keras_file.load_weights).

    Args:
      model: the built model.
      path: `.h5`, `.weights.h5`, `.keras` or a TF checkpoint prefix.
    """
    from mobilenetv4.weights import keras_file  # pylint: disable=g-import-not-at-top

    keras_file.load_weights(model, os.fspath(path))
