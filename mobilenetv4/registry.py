"""Model names, `create_model` and `list_models` (timm-style registry over specs.ARCHITECTURES)."""
import difflib
import os

from mobilenetv4 import builder, specs


def list_models():
  """Names accepted by `create_model`."""
  return sorted(specs.ARCHITECTURES)


def get_architecture(name):
  """The `Architecture` row table for `name`, or a ValueError listing the valid names."""
  if name not in specs.ARCHITECTURES:
    close = difflib.get_close_matches(str(name), specs.ARCHITECTURES, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"unknown model {name!r}{hint}; choose one of {', '.join(list_models())}")
  return specs.ARCHITECTURES[name]


def create_model(name, weights=None, **overrides):
  """Builds a MobileNetV4 model by name.

  Args:
    name: one of `list_models()`.
    weights: None (random init) or a path to weights saved by tf_keras (`model.save_weights`:
      `.h5`, `.weights.h5` or a TF checkpoint prefix). The model must have the same architecture.
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
  model = builder.build_model(get_architecture(name), **overrides)
  if weights is not None:
    load_weights(model, weights)
  return model


def load_weights(model, path):
  path = os.fspath(path)
  if not (os.path.exists(path) or os.path.exists(path + ".index")):
    raise FileNotFoundError(f"weights file {path!r} does not exist")
  try:
    model.load_weights(path)
  except (ValueError, OSError) as error:
    raise ValueError(f"could not load weights {path!r} into {model.name}: {error}") from error
