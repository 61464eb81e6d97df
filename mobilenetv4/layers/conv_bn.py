"""Conv-BN-activation, the unit every MobileNetV4 block is made of."""

import tf_keras as keras

from mobilenetv4.layers.anti_alias import ANTI_ALIAS, anti_alias_pool
from mobilenetv4.layers.common import (
    PADDINGS,
    ConfigurableMixin,
    batch_norm,
    get_activation,
    init_arguments,
    kernel_init,
    register,
    symmetric_pad,
)


@register
class ConvBN(ConfigurableMixin, keras.layers.Layer):
    """Conv2D or DepthwiseConv2D, then BatchNorm, then an optional activation.

    Args:
      filters: output channels of a regular conv (ignored by a depthwise conv).
      kernel_size: square kernel size.
      strides: conv stride.
      depthwise: a DepthwiseConv2D instead of a Conv2D.
      activation: one of common.ACTIVATIONS, applied after BN; None for a linear output.
      use_bn: whether BatchNorm follows the conv.
      padding: "same" (TF: at stride 2 on even inputs the extra pixel goes bottom/right) or
        "symmetric" (PyTorch/timm: k//2 on every side); matters only for strided kernels > 1.
      bn_momentum: BatchNorm momentum.
      bn_epsilon: BatchNorm epsilon.
      kernel_regularizer: regularizer of the conv kernel (a Keras regularizer, its name or config).
      anti_alias: None, "avg" or "blur": on a strided layer, moves the stride out of the conv into a
        low-pass downsample after the activation (timm's conv_aa_* / conv_blur_* models).
      **kwargs: keras.layers.Layer arguments (name, dtype, ...).
    """

    def __init__(
        self,
        filters=None,
        kernel_size=1,
        strides=1,
        depthwise=False,
        activation=None,
        use_bn=True,
        padding="same",
        bn_momentum=0.99,
        bn_epsilon=1e-5,
        kernel_regularizer=None,
        anti_alias=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if padding not in PADDINGS:
            raise ValueError(f"padding={padding!r}; choose one of {PADDINGS}")
        if anti_alias not in ANTI_ALIAS:
            raise ValueError(f"anti_alias={anti_alias!r}; choose one of {ANTI_ALIAS}")
        if not depthwise and not filters:
            raise ValueError(f"{self.name}: a regular conv needs filters > 0, got {filters!r}")
        self.record_config(**init_arguments(locals()))

        use_aa = anti_alias is not None and strides > 1
        self.aa = anti_alias_pool(anti_alias, strides=strides, padding=padding) if use_aa else None
        strides = 1 if use_aa else strides
        explicit_pad = padding == "symmetric" and strides > 1 and kernel_size > 1
        self.pad = symmetric_pad(kernel_size, name="pad") if explicit_pad else None
        conv_padding = "valid" if explicit_pad else "same"
        conv = dict(kernel_size=kernel_size, strides=strides, padding=conv_padding, use_bias=False)
        if depthwise:
            self.conv = keras.layers.DepthwiseConv2D(
                depthwise_initializer=kernel_init(),
                depthwise_regularizer=self.kernel_regularizer,
                name="conv",
                **conv,
            )
        else:
            self.conv = keras.layers.Conv2D(
                filters=filters,
                kernel_initializer=kernel_init(),
                kernel_regularizer=self.kernel_regularizer,
                name="conv",
                **conv,
            )
        self.bn = (
            batch_norm(momentum=bn_momentum, epsilon=bn_epsilon, name="bn") if use_bn else None
        )
        self.act = get_activation(activation)

    def call(self, x, training=None):
        if self.pad is not None:
            x = self.pad(x)
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x, training=training)
        if self.act is not None:
            x = self.act(x)
        return self.aa(x) if self.aa is not None else x
