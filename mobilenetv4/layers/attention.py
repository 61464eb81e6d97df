"""Mobile MQA (paper section 5, Eq. 2, Appendix G) and the two attention baselines of the ablations.

All three share one block interface (`MobileAttentionBlock`): pre-norm BN -> attention ->
layer scale -> drop path -> residual, with optional K/V spatial reduction by a stride-2 3x3
depthwise conv + BN. The attention cores differ:

- "mobile_mqa": multi-query attention (one shared K/V head) in the transpose-free layout of
  Appendix G / Fig. 11. Queries stay token-major, (batch, tokens * heads, key_dim), so every
  matmul has its contracted index last on the left and its free index last on the right and
  TFLite needs no TRANSPOSE around the BATCH_MATMULs.
- "mqa": the same maths written as the paper's Fig. 10 einsums (head-major "bhnk"), which the
  TFLite converter lowers with TRANSPOSE ops: the Table 17 baseline.
- "mhsa": multi-head self-attention with per-head keys and values: the Table 2 baseline.

Weights are 1x1 convolution kernels in every variant, so the same checkpoint loads into
"mobile_mqa" and "mqa" and they compute the same function.
"""

import inspect
import math

import tensorflow as tf
import tf_keras as keras

from mobilenetv4.layers.common import (
    ConfigurableMixin,
    batch_norm,
    conv_bn_settings,
    init_arguments,
    register,
    residual,
    residual_tail,
)
from mobilenetv4.layers.conv_bn import ConvBN

ATTENTION_TYPES = ("mobile_mqa", "mqa", "mhsa")


def _pointwise(filters, name, regularizer):
    return keras.layers.Conv2D(
        filters=filters, kernel_size=1, use_bias=False, kernel_regularizer=regularizer, name=name
    )


@register
class MultiQueryAttention2D(ConfigurableMixin, keras.layers.Layer):
    """Attention over the pixels of a feature map; "mobile_mqa", "mqa" (Fig. 10) or "mhsa".

    Args:
      num_heads: query heads.
      key_dim: channels per query / key head.
      value_dim: channels per value head.
      attention_type: one of ATTENTION_TYPES.
      kv_strides: 1, or 2 to downsample keys and values by a strided depthwise conv + BN.
      kv_dw_kernel_size: kernel of that depthwise conv.
      padding: "same" or "symmetric" (see ConvBN) for the K/V downsampling.
      bn_momentum: BatchNorm momentum.
      bn_epsilon: BatchNorm epsilon.
      kernel_regularizer: regularizer of every projection kernel.
      **kwargs: keras.layers.Layer arguments (name, dtype, ...).
    """

    def __init__(
        self,
        num_heads,
        key_dim,
        value_dim,
        attention_type="mobile_mqa",
        kv_strides=1,
        kv_dw_kernel_size=3,
        padding="same",
        bn_momentum=0.99,
        bn_epsilon=1e-5,
        kernel_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if attention_type not in ATTENTION_TYPES:
            raise ValueError(
                f"unknown attention_type {attention_type!r}; choose one of {ATTENTION_TYPES}"
            )
        if kv_strides not in (1, 2):
            raise ValueError(f"{self.name}: kv_strides must be 1 or 2, got {kv_strides}")
        self.record_config(**init_arguments(locals()))
        kv_heads = num_heads if attention_type == "mhsa" else 1

        def down(name):
            return ConvBN(
                kernel_size=kv_dw_kernel_size,
                strides=kv_strides,
                depthwise=True,
                name=name,
                **conv_bn_settings(self),
            )

        reg = self.kernel_regularizer
        self.query = _pointwise(num_heads * key_dim, "query", reg)
        self.key_down = down("key_down") if kv_strides > 1 else None
        self.key = _pointwise(kv_heads * key_dim, "key", reg)
        self.value_down = down("value_down") if kv_strides > 1 else None
        self.value = _pointwise(kv_heads * value_dim, "value", reg)
        self.output_proj = None  # created in build (needs the input width)

    def build(self, input_shape):
        self.output_proj = _pointwise(int(input_shape[-1]), "output", self.kernel_regularizer)
        super().build(input_shape)

    def call(self, x, training=None):
        keys, values = x, x
        if self.key_down is not None:
            keys = self.key_down(keys, training=training)
            values = self.value_down(values, training=training)
        q = self.query(x) * (self.key_dim**-0.5)
        k = self.key(keys)
        v = self.value(values)
        attend = {"mobile_mqa": self._mobile_mqa, "mqa": self._mqa_fig10, "mhsa": self._mhsa}[
            self.attention_type
        ]
        o = attend(q, k, v)  # (batch, height, width, heads * value_dim), head-major channels
        return self.output_proj(o)

    def _mobile_mqa(self, q, k, v):
        batch, height, width = tf.shape(q)[0], tf.shape(q)[1], tf.shape(q)[2]
        h, dk, dv = self.num_heads, self.key_dim, self.value_dim
        # Q "bnhk" -> (b, n*h, k): a free reshape of the 1x1 conv output (channel = head*k + d).
        q = tf.reshape(q, [batch, -1, dk])
        k = tf.reshape(k, [batch, -1, dk])  # (b, m, k)
        v = tf.reshape(v, [batch, -1, dv])  # (b, m, v)
        logits = tf.matmul(q, k, transpose_b=True)  # "bnhk,bmk->bnhm" as (b, n*h, m)
        weights = tf.nn.softmax(logits, axis=-1)
        o = tf.matmul(weights, v)  # "bnhm,bmv->bnhv" as (b, n*h, v)
        return tf.reshape(o, [batch, height, width, h * dv])

    def _mqa_fig10(self, q, k, v):
        # The paper's Fig. 10 layout: head-major queries. Same numbers, but the converter has to
        # transpose Q in and O out of the batch matmuls.
        batch, height, width = tf.shape(q)[0], tf.shape(q)[1], tf.shape(q)[2]
        h, dk, dv = self.num_heads, self.key_dim, self.value_dim
        q = tf.reshape(q, [batch, -1, h, dk])
        k = tf.reshape(k, [batch, -1, dk])
        v = tf.reshape(v, [batch, -1, dv])
        q = tf.einsum("bnhk->bhnk", q)
        logits = tf.einsum("bhnk,bmk->bhnm", q, k)
        weights = tf.nn.softmax(logits, axis=-1)
        o = tf.einsum("bhnm,bmv->bhnv", weights, v)
        o = tf.einsum("bhnv->bnhv", o)
        return tf.reshape(o, [batch, height, width, h * dv])

    def _mhsa(self, q, k, v):
        batch, height, width = tf.shape(q)[0], tf.shape(q)[1], tf.shape(q)[2]
        h, dk, dv = self.num_heads, self.key_dim, self.value_dim
        q = tf.reshape(q, [batch, -1, h, dk])
        k = tf.reshape(k, [batch, -1, h, dk])
        v = tf.reshape(v, [batch, -1, h, dv])
        logits = tf.einsum("bnhk,bmhk->bhnm", q, k)
        weights = tf.nn.softmax(logits, axis=-1)
        o = tf.einsum("bhnm,bmhv->bnhv", weights, v)
        return tf.reshape(o, [batch, height, width, h * dv])

    def matmul_macs(self, input_shape):
        """MACs of the two attention matmuls (QK^T and AV) for an NHWC input shape."""
        height, width = int(input_shape[1]), int(input_shape[2])
        n = height * width
        kv_h = math.ceil(height / self.kv_strides)
        kv_w = math.ceil(width / self.kv_strides)
        m = kv_h * kv_w
        return n * m * self.num_heads * (self.key_dim + self.value_dim)


@register
class MobileAttentionBlock(ConfigurableMixin, keras.layers.Layer):
    """Pre-norm BN -> attention -> layer scale -> drop path -> residual (no FFN: UIBs surround it).

    Args:
      num_heads: query heads.
      key_dim: channels per query / key head.
      value_dim: channels per value head; None for key_dim.
      layer_scale_init_value: as in FusedIB (hybrids: 1e-5).
      stochastic_depth_rate: as in FusedIB: drop-path rate of the attention branch.
      **kwargs: the other arguments of MultiQueryAttention2D, with its defaults: kv_strides (paper:
        2 in stage 3 of the hybrids), kv_dw_kernel_size, attention_type, padding, bn_momentum and
        bn_epsilon (also the pre-norm BatchNorm's), kernel_regularizer; and keras.layers.Layer
        arguments (name, dtype, ...).
    """

    def __init__(
        self,
        num_heads,
        key_dim,
        value_dim=None,
        layer_scale_init_value=None,
        stochastic_depth_rate=0.0,
        **kwargs,
    ):
        # One definition of the attention's options and defaults: MultiQueryAttention2D's.
        options = {
            name: kwargs.pop(name, parameter.default)
            for name, parameter in inspect.signature(MultiQueryAttention2D).parameters.items()
            if parameter.default is not inspect.Parameter.empty
        }
        super().__init__(**kwargs)
        self.record_config(
            num_heads=num_heads,
            key_dim=key_dim,
            value_dim=value_dim,
            layer_scale_init_value=layer_scale_init_value,
            stochastic_depth_rate=stochastic_depth_rate,
            **options,
        )
        self.value_dim = value_dim or key_dim
        attention = {
            name: getattr(self, name)
            for name in inspect.signature(MultiQueryAttention2D).parameters
            if name != "kwargs"
        }
        self.norm = batch_norm(momentum=self.bn_momentum, epsilon=self.bn_epsilon, name="norm")
        self.attn = MultiQueryAttention2D(name="attn", **attention)
        self.layer_scale, self.drop_path = residual_tail(
            layer_scale_init_value, stochastic_depth_rate
        )

    @property
    def kind(self):
        return {"mobile_mqa": "Mobile-MQA", "mqa": "MQA", "mhsa": "MHSA"}[self.attention_type]

    def call(self, x, training=None):
        branch = self.attn(self.norm(x, training=training), training=training)
        return residual(self, x, branch, training)
