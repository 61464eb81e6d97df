"""Builds a functional tf_keras model from an `Architecture` (specs.py)."""
import dataclasses

import tf_keras as keras

from mobilenetv4 import layers as L
from mobilenetv4 import specs
from mobilenetv4.layers.common import PADDINGS, make_divisible

TOTAL_STRIDE = 32
ENDPOINTS = ("stride_4", "stride_8", "stride_16", "stride_32")


def _check_input_shape(input_shape, default_size):
  if input_shape is None:
    return (default_size, default_size, 3)
  input_shape = tuple(input_shape)
  if len(input_shape) != 3:
    raise ValueError(f"input_shape must be (height, width, channels), got {input_shape}")
  height, width, channels = input_shape
  for axis, size in (("height", height), ("width", width)):
    if size is not None and size < TOTAL_STRIDE:
      raise ValueError(
          f"input {axis} {size} is smaller than the network's total stride {TOTAL_STRIDE}; "
          f"use an input of at least {TOTAL_STRIDE}x{TOTAL_STRIDE} (or None for any size)")
  if channels is None or channels < 1:
    raise ValueError(f"input channels must be a positive number, got {channels}")
  return input_shape


def _check_options(width_multiplier, pooling, padding, classes, dropout, stochastic_depth_rate):
  if width_multiplier <= 0:
    raise ValueError(f"width_multiplier must be > 0, got {width_multiplier}")
  if pooling not in (None, "avg", "max"):
    raise ValueError(f"pooling must be None, 'avg' or 'max', got {pooling!r}")
  if padding not in PADDINGS:
    raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
  if not isinstance(classes, int) or classes < 1:
    raise ValueError(f"classes must be a positive integer, got {classes!r}")
  if not 0.0 <= dropout < 1.0:
    raise ValueError(f"dropout must be in [0, 1), got {dropout}")
  if not 0.0 <= stochastic_depth_rate < 1.0:
    raise ValueError(f"stochastic_depth_rate must be in [0, 1), got {stochastic_depth_rate}")


def build_model(arch, *, include_top=True, input_shape=None, pooling=None, classes=1000,
                classifier_activation=None, dropout=None, width_multiplier=None,
                stochastic_depth_rate=0.0, bn_momentum=0.99, bn_epsilon=1e-5, padding="same",
                features_only=False, kernel_regularizer=None, attention_type="mobile_mqa",
                name=None):
  """Returns a tf_keras functional model (see `mobilenetv4.create_model` for the arguments)."""
  width_multiplier = arch.width_multiplier if width_multiplier is None else width_multiplier
  dropout = arch.dropout if dropout is None else dropout
  _check_options(width_multiplier, pooling, padding, classes, dropout, stochastic_depth_rate)
  if attention_type not in L.ATTENTION_TYPES:
    raise ValueError(f"attention_type must be one of {L.ATTENTION_TYPES}, got {attention_type!r}")
  arch = dataclasses.replace(arch, width_multiplier=width_multiplier).validate()
  input_shape = _check_input_shape(input_shape, arch.default_size)

  def width(filters):
    return make_divisible(filters * width_multiplier) if width_multiplier != 1.0 else filters

  common = dict(padding=padding, bn_momentum=bn_momentum, bn_epsilon=bn_epsilon,
                kernel_regularizer=kernel_regularizer)
  # Anti-aliased variants (timm conv_aa_* / conv_blur_*): every strided block conv, not the stem
  # nor the attention K/V downsampling.
  block_common = dict(common, anti_alias=arch.anti_alias)
  act = arch.activation

  inputs = keras.Input(shape=input_shape, name="image")
  # The stem is never width-scaled (timm `fix_stem`), so reduced-width models keep 3x3x32.
  x = L.ConvBN(arch.stem.filters, arch.stem.kernel, arch.stem.stride, activation=act,
               name="stem", **common)(inputs)
  endpoints = {}
  block_index = 0
  for s, stage in enumerate(arch.stages, start=1):
    for b, block in enumerate(stage):
      # Stochastic depth grows linearly with depth, over every block kind (attention included).
      drop = stochastic_depth_rate * block_index / arch.num_blocks
      block_name = f"stage{s}_block{b}"
      if isinstance(block, specs.Conv2D):
        layer = L.ConvBN(width(block.filters), block.kernel, block.stride, activation=act,
                         name=block_name, **block_common)
      elif isinstance(block, specs.FusedIB):
        layer = L.FusedIB(width(block.filters), block.expand, block.kernel, block.stride,
                          activation=act, stochastic_depth_rate=drop, name=block_name,
                          **block_common)
      elif isinstance(block, specs.UIB):
        layer = L.UniversalInvertedBottleneck(
            width(block.filters), block.expand, block.start_dw, block.middle_dw, block.stride,
            activation=act, layer_scale_init_value=arch.layer_scale, stochastic_depth_rate=drop,
            name=block_name, **block_common)
      elif isinstance(block, specs.MobileMQA):
        layer = L.MobileAttentionBlock(
            block.heads, block.key_dim, block.key_dim, block.kv_stride,
            attention_type=attention_type, layer_scale_init_value=arch.layer_scale,
            stochastic_depth_rate=drop, name=block_name, **common)
      else:
        raise TypeError(f"{arch.name} stage {s} block {b}: unknown block spec {block!r}")
      x = layer(x)
      block_index += 1
    endpoints[ENDPOINTS[s - 1]] = x

  model_name = name or f"mobilenetv4_{arch.name}"
  if features_only:
    return keras.Model(inputs, endpoints, name=model_name)

  x = L.ConvBN(width(arch.head_conv.filters), 1, activation=act, name="head_conv", **common)(x)
  if include_top:
    x = keras.layers.GlobalAveragePooling2D(keepdims=True, name="global_pool")(x)
    x = L.ConvBN(arch.num_features, 1, activation=act, name="head", **common)(x)
    x = keras.layers.Flatten(name="flatten")(x)
    if dropout > 0:
      x = keras.layers.Dropout(dropout, name="dropout")(x)
    x = keras.layers.Dense(classes, activation=classifier_activation,
                           kernel_regularizer=kernel_regularizer, name="classifier")(x)
  elif pooling == "avg":
    x = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
  elif pooling == "max":
    x = keras.layers.GlobalMaxPooling2D(name="global_pool")(x)
  return keras.Model(inputs, x, name=model_name)
