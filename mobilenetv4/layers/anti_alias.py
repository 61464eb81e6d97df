"""Anti-aliased downsampling (Zhang, 2019) as timm's conv_aa_* / conv_blur_* MobileNetV4s use it.

A strided conv becomes: stride-1 conv -> BN -> act -> a fixed low-pass downsample. timm offers two
downsamplers: "avg" (2x2 average pool, stride 2; no padding, so odd sizes floor) and "blur"
(timm's "blurpc": fixed 3x3 binomial [1,2,1]^T[1,2,1]/16 depthwise filter, zero padding 1, stride 2).
Neither has weights, so checkpoints map one to one onto the plain models' variables.
"""

import numpy as np
import tensorflow as tf
import tf_keras as keras

from mobilenetv4.layers.common import ConfigurableMixin, register

ANTI_ALIAS = (None, "avg", "blur")


@register
class BlurPool2D(ConfigurableMixin, keras.layers.Layer):
    """Fixed 3x3 binomial blur, then subsampling by `strides` (no trainable weights).

    Args:
      strides: subsampling factor.
      padding: "symmetric" (timm: zero padding 1 on every side) or "same" (TF's convention).
      **kwargs: keras.layers.Layer arguments (name, dtype, ...).
    """

    def __init__(self, strides=2, padding="symmetric", **kwargs):
        super().__init__(**kwargs)
        self.record_config(strides=strides, padding=padding)

    def call(self, x):
        taps = np.array([1.0, 2.0, 1.0]) / 4.0
        kernel = np.tile(np.outer(taps, taps)[:, :, None, None], (1, 1, int(x.shape[-1]), 1))
        kernel = tf.constant(kernel, dtype=x.dtype)
        if self.padding == "symmetric":  # timm: pad 1 on every side, as PyTorch convs do
            x = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
            pad = "VALID"
        else:
            pad = "SAME"
        return tf.nn.depthwise_conv2d(x, kernel, [1, self.strides, self.strides, 1], pad)


def anti_alias_pool(kind, strides, padding, name="aa"):
    """The downsampling layer for an anti-aliased strided conv.

    Args:
      kind: "avg" (2x2 average pool) or "blur" (BlurPool2D).
      strides: the downsampling factor.
      padding: the block's padding convention ("same" | "symmetric"; blur only).
      name: the layer name.
    """
    if kind == "avg":
        return keras.layers.AveragePooling2D(
            pool_size=strides, strides=strides, padding="valid", name=name
        )
    if kind == "blur":
        return BlurPool2D(strides=strides, padding=padding, name=name)
    raise ValueError(f"anti_alias={kind!r}; choose one of {ANTI_ALIAS}")
