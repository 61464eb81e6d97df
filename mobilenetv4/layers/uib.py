"""The Universal Inverted Bottleneck (paper section 4, Fig. 4) and the FusedIB block."""

import tf_keras as keras

from mobilenetv4.layers.common import (
    ConfigurableMixin,
    conv_bn_settings,
    init_arguments,
    make_divisible,
    register,
    residual,
    residual_tail,
)
from mobilenetv4.layers.conv_bn import ConvBN
from mobilenetv4.specs import uib_kind


class _ResidualBlock(ConfigurableMixin, keras.layers.Layer):
    """Shared bookkeeping: block config, and the residual tail created once input channels are known.

    Its arguments (filters, strides, activation, padding, bn_momentum, bn_epsilon,
    layer_scale_init_value, stochastic_depth_rate, kernel_regularizer, anti_alias) are documented
    on FusedIB.
    """

    def __init__(
        self,
        filters,
        strides=1,
        activation="relu",
        padding="same",
        bn_momentum=0.99,
        bn_epsilon=1e-5,
        layer_scale_init_value=None,
        stochastic_depth_rate=0.0,
        kernel_regularizer=None,
        anti_alias=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if strides not in (1, 2):
            raise ValueError(f"{self.name}: strides must be 1 or 2, got {strides}")
        # anti_alias applies to this block's strided conv only
        self.record_config(**init_arguments(locals()))
        self.layer_scale = None
        self.drop_path = None
        self.use_residual = False

    def _conv(self, name, filters=None, kernel_size=1, strides=1, depthwise=False, activation=None):
        return ConvBN(
            filters=filters,
            kernel_size=kernel_size,
            strides=strides,
            depthwise=depthwise,
            activation=activation,
            anti_alias=self.anti_alias,
            name=name,
            **conv_bn_settings(self),
        )

    def _build_residual(self, in_channels):
        # A shortcut exists only where shapes allow: same width and stride 1.
        self.use_residual = in_channels == self.filters and self.strides == 1
        self.layer_scale, self.drop_path = residual_tail(
            self.layer_scale_init_value, self.stochastic_depth_rate, self.use_residual
        )

    def _finish(self, shortcut, x, training):
        if not self.use_residual:
            return self.layer_scale(x) if self.layer_scale is not None else x
        return residual(self, shortcut, x, training)


@register
class UniversalInvertedBottleneck(_ResidualBlock):
    """UIB: [start DW] -> 1x1 expand -> [middle DW] -> 1x1 project, with an optional residual.

    A kernel size of 0 removes that DW, which gives the four instantiations:
    ExtraDW (both), IB (middle only), ConvNext-like (start only) and FFN (neither).
    The stride sits on the middle DW when it exists (spatial mixing after expansion, as in IB),
    else on the start DW. Start DW has BN but no activation; expand and middle DW have both;
    the projection is linear.

    Args:
      filters: output channels.
      expand_ratio: expanded width as a multiple of the input channels.
      start_dw_kernel_size: kernel of the start DW; 0 for none.
      middle_dw_kernel_size: kernel of the middle DW; 0 for none.
      strides: 1 or 2 (on the middle DW if there is one, else on the start DW).
      **kwargs: activation, padding, bn_momentum, bn_epsilon, layer_scale_init_value,
        stochastic_depth_rate, kernel_regularizer, anti_alias (as in FusedIB) and
        keras.layers.Layer arguments.
    """

    def __init__(
        self,
        filters,
        expand_ratio,
        start_dw_kernel_size=0,
        middle_dw_kernel_size=3,
        strides=1,
        **kwargs,
    ):
        super().__init__(filters=filters, strides=strides, **kwargs)
        if strides > 1 and not (start_dw_kernel_size or middle_dw_kernel_size):
            raise ValueError(
                f"{self.name}: an FFN block (no depthwise conv) cannot have stride {strides}; "
                "give it a start or middle DW kernel, or use stride 1"
            )
        if expand_ratio <= 0:
            raise ValueError(f"{self.name}: expand_ratio must be > 0, got {expand_ratio}")
        self.record_config(
            expand_ratio=expand_ratio,
            start_dw_kernel_size=start_dw_kernel_size,
            middle_dw_kernel_size=middle_dw_kernel_size,
        )

    @property
    def kind(self):
        return uib_kind(self.start_dw_kernel_size, self.middle_dw_kernel_size)

    def build(self, input_shape):
        in_channels = int(input_shape[-1])
        self.expanded_filters = make_divisible(in_channels * self.expand_ratio)
        start_stride = 1 if self.middle_dw_kernel_size else self.strides
        self.dw_start = (
            self._conv(
                "dw_start",
                kernel_size=self.start_dw_kernel_size,
                strides=start_stride,
                depthwise=True,
            )
            if self.start_dw_kernel_size
            else None
        )
        self.pw_exp = self._conv(
            "pw_exp", filters=self.expanded_filters, activation=self.activation
        )
        self.dw_mid = (
            self._conv(
                "dw_mid",
                kernel_size=self.middle_dw_kernel_size,
                strides=self.strides,
                depthwise=True,
                activation=self.activation,
            )
            if self.middle_dw_kernel_size
            else None
        )
        self.pw_proj = self._conv("pw_proj", filters=self.filters)
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
        return self._finish(shortcut, x, training)


@register
class FusedIB(_ResidualBlock):
    """Fused inverted bottleneck: a full kxk conv expands (BN + act), a 1x1 conv projects (BN).

    Args:
      filters: output channels.
      expand_ratio: expanded width as a multiple of the input channels.
      kernel_size: kernel of the expanding conv (it carries the stride).
      strides: 1 or 2.
      activation: activation after the expanding conv (common.ACTIVATIONS).
      padding: "same" or "symmetric" (see ConvBN).
      bn_momentum: BatchNorm momentum.
      bn_epsilon: BatchNorm epsilon.
      layer_scale_init_value: initial layer scale of the branch, or None for none (hybrids: 1e-5).
      stochastic_depth_rate: drop-path rate of the residual branch, in [0, 1).
      kernel_regularizer: regularizer of every conv kernel.
      anti_alias: None, "avg" or "blur" for the strided conv (see ConvBN).
      **kwargs: keras.layers.Layer arguments (name, dtype, ...).
    """

    def __init__(self, filters, expand_ratio, kernel_size=3, strides=1, **kwargs):
        super().__init__(filters=filters, strides=strides, **kwargs)
        self.record_config(expand_ratio=expand_ratio, kernel_size=kernel_size)

    @property
    def kind(self):
        return "FusedIB"

    def build(self, input_shape):
        in_channels = int(input_shape[-1])
        self.expanded_filters = make_divisible(in_channels * self.expand_ratio)
        self.expand = self._conv(
            "expand",
            filters=self.expanded_filters,
            kernel_size=self.kernel_size,
            strides=self.strides,
            activation=self.activation,
        )
        self.project = self._conv("project", filters=self.filters)
        self._build_residual(in_channels)
        super().build(input_shape)

    def call(self, x, training=None):
        shortcut = x
        x = self.project(self.expand(x, training=training), training=training)
        return self._finish(shortcut, x, training)
