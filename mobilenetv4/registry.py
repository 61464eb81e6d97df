"""Model names, `create_model` and `list_models` (timm-style registry over specs.ARCHITECTURES)."""
import os

from mobilenetv4 import builder, specs


def list_models():
  """Names accepted by `create_model`."""
  return sorted(specs.ARCHITECTURES)


def get_architecture(name):
  """The `Architecture` row table for `name`, or a ValueError listing the valid names."""
  return specs.get(name)


def create_model(name, weights=None, pretrained_tag=None, **overrides):
  """Builds a MobileNetV4 model by name.

  Args:
    name: one of `list_models()`.
    weights: None (random init); a path to weights saved by tf_keras (`model.save_weights`:
      `.h5`, `.weights.h5` or a TF checkpoint prefix), for the same architecture; or a timm
      checkpoint (`.safetensors`, see docs/weights.md), which also attaches `model.preprocess`.
    pretrained_tag: with a timm checkpoint, its tag (e.g. "e500_r256_in1k") if the path does
      not name it; it selects the preprocessing (`mobilenetv4.weights.list_pretrained()`).
    **overrides: keyword arguments of `builder.build_model`, with the keras.applications
      meanings: include_top, input_shape, pooling, classes, classifier_activation (None gives
      logits), dropout, width_multiplier, stochastic_depth_rate, bn_momentum, bn_epsilon,
      padding ("same" | "symmetric"), features_only, kernel_regularizer, attention_type
      ("mobile_mqa" | "mqa" | "mhsa", hybrids only), name.

  Returns:
    A functional `tf_keras.Model`.
  """
  unknown = set(overrides) - set(builder.build_model.__kwdefaults__)
  if unknown:
    raise TypeError(f"create_model({name!r}) got unknown arguments {sorted(unknown)}; "
                    f"allowed: {sorted(builder.build_model.__kwdefaults__)}")
  arch = get_architecture(name)
  if weights is not None and not _is_keras_weights(weights):
    from mobilenetv4.weights.timm_model import create_from_timm  # pylint: disable=g-import-not-at-top
    return create_from_timm(name, weights, lambda **kw: builder.build_model(arch, **kw),
                            pretrained_tag=pretrained_tag, **overrides)
  if pretrained_tag is not None:
    raise ValueError("pretrained_tag applies only to timm checkpoints (weights=*.safetensors)")
  saved_cfg = None
  if weights is not None:  # converted timm weights carry their build arguments (padding, ...)
    from mobilenetv4.weights import keras_file, timm_model  # pylint: disable=g-import-not-at-top
    overrides, saved_cfg = keras_file.apply_saved_build(name, weights, overrides)
  model = builder.build_model(arch, **overrides)
  if weights is not None:
    load_weights(model, weights)
  if saved_cfg is not None:
    timm_model.attach_pretrained_cfg(model, saved_cfg)
  return model


def _is_keras_weights(path):
  path = os.fspath(path)
  return path.endswith((".h5", ".hdf5", ".keras")) or os.path.exists(path + ".index")


def load_weights(model, path):
  path = os.fspath(path)
  if not (os.path.exists(path) or os.path.exists(path + ".index")):
    raise FileNotFoundError(f"weights file {path!r} does not exist")
  try:
    model.load_weights(path)
  except (ValueError, OSError) as error:
    raise ValueError(f"could not load weights {path!r} into {model.name}: {error}") from error
