"""Model names, `create_model` and `list_models` (timm-style registry over specs.ARCHITECTURES)."""

import json
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


def _searched_architecture(architecture):
    """A `specs.Architecture` from one, from its dict (`search_space.architecture_to_dict`), or from
    a JSON file holding it (a search's architecture.json, `experiments.nas.analyze --output`)."""
    from mobilenetv4 import search_space  # pylint: disable=g-import-not-at-top

    if isinstance(architecture, specs.Architecture):
        return architecture
    if isinstance(architecture, (str, os.PathLike)):
        path = os.fspath(architecture)
        try:
            with open(path, encoding="utf-8") as f:
                architecture = json.load(f)
        except OSError as e:
            raise UserError(f"cannot read architecture {path}: {e.strerror}") from None
        except ValueError:
            raise UserError(f"architecture {path} is not JSON") from None
    if isinstance(architecture, dict) and isinstance(architecture.get("architecture"), dict):
        architecture = architecture["architecture"]
    if not isinstance(architecture, dict):
        raise UserError("architecture must be a specs.Architecture, a dict or a JSON file")
    return search_space.architecture_from_dict(architecture)


def create_model(name=None, weights=None, pretrained_tag=None, *, architecture=None, **overrides):
    """Builds a MobileNetV4 model by name, or a searched architecture.

    Args:
      name: one of `list_models()` (or None with `architecture`).
      weights: None (random init); a tf_keras weights file (`model.save_weights`: `.h5`,
        `.weights.h5`, or a TF checkpoint prefix; or the weights of a whole-model `.keras` / `.h5`,
        whose architecture is never deserialised); or a timm checkpoint (`.safetensors`, see
        docs/weights.md), which also attaches `model.preprocess`. A weights file with a build
        record (written by `mobilenetv4.convert` and the trainer) supplies its build arguments and
        input size, and is refused when written for another model, class count, width or
        attention type.
      pretrained_tag: with a timm checkpoint, its tag (e.g. "e500_r256_in1k") if the path does
        not name it; it selects the preprocessing (`mobilenetv4.weights.list_pretrained()`).
      architecture: instead of `name`, a `specs.Architecture`, its dict, or a JSON file holding
        it (what `experiments.nas.search` and `experiments.nas.analyze --output` write); built
        with random weights.
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
    if architecture is not None:
        if name is not None or weights is not None:
            raise UserError("create_model takes a name (with weights) or an architecture, not both")
        return builder.build_model(_searched_architecture(architecture), **overrides)
    if name is None:
        raise UserError("create_model needs a model name (list_models()) or architecture=")
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
