"""The Universal Inverted Bottleneck (paper section 4, Fig. 4) and the FusedIB block."""
import tf_keras as keras

from mobilenetv4.layers.common import (
    LayerScale, StochasticDepth, make_divisible, register, residual)
from mobilenetv4.layers.conv_bn import ConvBN
from mobilenetv4.specs import uib_kind


class _ResidualBlock(keras.layers.Layer):
  """Shared bookkeeping: block config, and the residual tail created once input channels are known."""

  def __init__(self, filters, strides=1, activation="relu", padding="same", bn_momentum=0.99,
               bn_epsilon=1e-5, layer_scale_init_value=None, stochastic_depth_rate=0.0,
               kernel_regularizer=None, anti_alias=None, **kwargs):
    super().__init__(**kwargs)
    if strides not in (1, 2):
      raise ValueError(f"{self.name}: strides must be 1 or 2, got {strides}")
    self.filters = filters
    self.strides = strides
    self.activation = activation
    self.padding = padding
    self.bn_momentum = bn_momentum
    self.bn_epsilon = bn_epsilon
    self.layer_scale_init_value = layer_scale_init_value
    self.stochastic_depth_rate = stochastic_depth_rate
    self.kernel_regularizer = kernel_regularizer
    self.anti_alias = anti_alias  # applies to this block's strided conv only
    self.layer_scale = None
    self.drop_path = None
    self.use_residual = False

  def _conv(self, name, filters=None, kernel_size=1, strides=1, depthwise=False, activation=None):
    return ConvBN(filters, kernel_size, strides, depthwise=depthwise, activation=activation,
                  padding=self.padding, bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon,
                  kernel_regularizer=self.kernel_regularizer, anti_alias=self.anti_alias,
                  name=name)

  def _build_residual(self, in_channels):
    # A shortcut exists only where shapes allow: same width and stride 1.
    self.use_residual = in_channels == self.filters and self.strides == 1
    if self.layer_scale_init_value is not None:
      self.layer_scale = LayerScale(self.layer_scale_init_value, name="layer_scale")
    if self.use_residual and self.stochastic_depth_rate > 0:
      self.drop_path = StochasticDepth(self.stochastic_depth_rate, name="drop_path")

  def get_config(self):
    config = super().get_config()
    config.update(
        filters=self.filters, strides=self.strides, activation=self.activation,
        padding=self.padding, bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon,
        layer_scale_init_value=self.layer_scale_init_value,
        stochastic_depth_rate=self.stochastic_depth_rate, anti_alias=self.anti_alias,
        kernel_regularizer=keras.regularizers.serialize(
            keras.regularizers.get(self.kernel_regularizer)) if self.kernel_regularizer else None)
    return config


@register
class UniversalInvertedBottleneck(_ResidualBlock):
  """UIB: [start DW] -> 1x1 expand -> [middle DW] -> 1x1 project, with an optional residual.

  A kernel size of 0 removes that DW, which gives the four instantiations:
  ExtraDW (both), IB (middle only), ConvNext-like (start only) and FFN (neither).
  The stride sits on the middle DW when it exists (spatial mixing after expansion, as in IB),
  else on the start DW. Start DW has BN but no activation; expand and middle DW have both;
  the projection is linear.
  """

  def __init__(self, filters, expand_ratio, start_dw_kernel_size=0, middle_dw_kernel_size=3,
               strides=1, **kwargs):
    super().__init__(filters, strides, **kwargs)
    if strides > 1 and not (start_dw_kernel_size or middle_dw_kernel_size):
      raise ValueError(
          f"{self.name}: an FFN block (no depthwise conv) cannot have stride {strides}; "
          "give it a start or middle DW kernel, or use stride 1")
    if expand_ratio <= 0:
      raise ValueError(f"{self.name}: expand_ratio must be > 0, got {expand_ratio}")
    self.expand_ratio = expand_ratio
    self.start_dw_kernel_size = start_dw_kernel_size
    self.middle_dw_kernel_size = middle_dw_kernel_size

  @property
  def kind(self):
    return uib_kind(self.start_dw_kernel_size, self.middle_dw_kernel_size)

  def build(self, input_shape):
    in_channels = int(input_shape[-1])
    self.expanded_filters = make_divisible(in_channels * self.expand_ratio)
    start_stride = 1 if self.middle_dw_kernel_size else self.strides
    self.dw_start = self._conv(
        "dw_start", kernel_size=self.start_dw_kernel_size, strides=start_stride,
        depthwise=True) if self.start_dw_kernel_size else None
    self.pw_exp = self._conv("pw_exp", self.expanded_filters, activation=self.activation)
    self.dw_mid = self._conv(
        "dw_mid", kernel_size=self.middle_dw_kernel_size, strides=self.strides, depthwise=True,
        activation=self.activation) if self.middle_dw_kernel_size else None
    self.pw_proj = self._conv("pw_proj", self.filters)
    self._build_residual(in_channels)
    super().build(input_shape)

  def call(self, x, training=None):
    shortcut = x
    if self.dw_start is not None:
      x = self.dw_start(x, training=training)
    x = self.pw_exp(x, training=training)
    if self.dw_mid is not None:
      x = self.dw_mid(x, training=training)
    x = self.pw_proj(x, training=training)
    if not self.use_residual:
      return self.layer_scale(x) if self.layer_scale is not None else x
    return residual(self, shortcut, x, training)

  def get_config(self):
    config = super().get_config()
    config.update(expand_ratio=self.expand_ratio, start_dw_kernel_size=self.start_dw_kernel_size,
                  middle_dw_kernel_size=self.middle_dw_kernel_size)
    return config


@register
class FusedIB(_ResidualBlock):
  """Fused inverted bottleneck: a full kxk conv expands (BN + act), a 1x1 conv projects (BN)."""

  def __init__(self, filters, expand_ratio, kernel_size=3, strides=1, **kwargs):
    super().__init__(filters, strides, **kwargs)
    self.expand_ratio = expand_ratio
    self.kernel_size = kernel_size

  @property
  def kind(self):
    return "FusedIB"

  def build(self, input_shape):
    in_channels = int(input_shape[-1])
    self.expanded_filters = make_divisible(in_channels * self.expand_ratio)
    self.expand = self._conv("expand", self.expanded_filters, self.kernel_size, self.strides,
                             activation=self.activation)
    self.project = self._conv("project", self.filters)
    self._build_residual(in_channels)
    super().build(input_shape)

  def call(self, x, training=None):
    shortcut = x
    x = self.project(self.expand(x, training=training), training=training)
    if not self.use_residual:
      return self.layer_scale(x) if self.layer_scale is not None else x
    return residual(self, shortcut, x, training)

  def get_config(self):
    config = super().get_config()
    config.update(expand_ratio=self.expand_ratio, kernel_size=self.kernel_size)
    return config
