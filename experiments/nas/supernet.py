"""The weight-sharing supernet of a search space (TuNAS), in tf_keras.

One network holds the largest version of every block; a sampled architecture (one choice index
per searched decision, an int32 vector) selects a path through it at call time, inside one traced
graph (no retracing per architecture):
  - Widths: every conv has the largest width of its choices; a chosen width keeps the first N
    output channels through a 0/1 channel mask applied after BN and activation (so the next layer
    sees zeros in the unused channels: it runs as the smaller conv slicing the shared kernel).
  - Depthwise kernels: one shared kxk kernel per DW position (k = largest choice); a 3x3 is the
    centre of the 5x5 (the kernel is masked outside the centre; with "same" padding this equals a
    3x3 conv at stride 1 and 2: tests/nas/test_supernet.py). One BN per DW position, shared by
    its kernel sizes.
  - Absent (start DW = 0, middle DW = 0, block present = False): identity paths. An absent block
    is its residual's shortcut alone.
  - Expansions: the expanded width make_divisible(input width x e) is a channel mask, like widths.
  - BatchNorm: per-step statistics (TuNAS): BN always normalises with the current batch's
    statistics, in training and in the RL step, so it is valid for whichever width and path the
    step sampled; moving averages are never used by the supernet.
Every candidate path is computed and masked (one-hot mixtures), which costs the sum of the
candidates per step: right for the small spaces searched on CPU; a TPU search of the paper's
spaces would switch paths (tf.switch_case) instead.
"""

import numpy as np
import tensorflow as tf
import tf_keras as keras

from mobilenetv4.search_space import make_divisible


def _kernel_init():
    return keras.initializers.VarianceScaling(2.0, "fan_out", "truncated_normal")


class _Choices:
    """Per-call view of the sampled indices: one-hot vectors by decision name."""

    def __init__(self, space, indices):
        self.space = space
        self.held = space.values()
        self.positions = {d.name: i for i, d in enumerate(space.decisions)}
        self.indices = indices
        self.by_name = {d.name: d for d in space.all_decisions()}

    def onehot(self, name):
        d = self.by_name[name]
        if name in self.positions:
            return tf.one_hot(self.indices[self.positions[name]], len(d.choices))
        return tf.constant(np.eye(len(d.choices))[d.index(self.held[name])], tf.float32)

    def choices(self, name):
        return self.by_name[name].choices


def channel_mask(count, size):
    """[size] float mask with ones on the first `count` channels."""
    return tf.cast(tf.range(size) < tf.cast(tf.round(count), tf.int32), tf.float32)


class _ConvBN(keras.layers.Layer):
    """conv (or depthwise conv with a mixture of centred kernel sizes) + BN (batch statistics)."""

    def __init__(self, filters, kernel, stride, depthwise=False, kernels=None, **kw):
        super().__init__(**kw)
        self.filters, self.kernel, self.stride = filters, kernel, stride
        self.depthwise = depthwise
        self.kernels = kernels  # depthwise: the kernel sizes of the choices (0 = absent)
        self.bn = keras.layers.BatchNormalization(momentum=0.99, epsilon=1e-5, name="bn")

    def build(self, input_shape):
        cin = int(input_shape[-1])
        shape = (
            (self.kernel, self.kernel, cin, 1)
            if self.depthwise
            else (self.kernel, self.kernel, cin, self.filters)
        )
        self.w = self.add_weight("kernel", shape, initializer=_kernel_init())
        if self.depthwise:
            masks = []
            for k in self.kernels:
                m = np.zeros((self.kernel, self.kernel, 1, 1), np.float32)
                if k:
                    lo = (self.kernel - k) // 2
                    m[lo : lo + k, lo : lo + k] = 1.0
                masks.append(m)
            self.kernel_masks = tf.constant(np.stack(masks))  # [choices, k, k, 1, 1]
        super().build(input_shape)

    def call(self, x, onehot=None):
        if self.depthwise:
            mask = tf.tensordot(onehot, self.kernel_masks, axes=1)
            y = tf.nn.depthwise_conv2d(
                x, self.w * mask, [1, self.stride, self.stride, 1], padding="SAME"
            )
        else:
            y = tf.nn.conv2d(x, self.w, self.stride, padding="SAME")
        return self.bn(y, training=True)


def _optional(layer, x, onehot, kernels):
    """A DW position whose choices may include 0 (absent: the identity path)."""
    if 0 not in kernels:
        return layer(x, onehot)
    absent = onehot[kernels.index(0)]
    return absent * x + (1.0 - absent) * layer(x, onehot)


class SupernetUIB(keras.layers.Layer):
    """The largest UIB of one block position; the sampled choices pick its instantiation."""

    def __init__(
        self, prefix, stage_prefix, in_width_name, in_widths, out_widths, space, stride, **kw
    ):
        super().__init__(**kw)
        self.prefix, self.stage_prefix = prefix, stage_prefix
        self.in_width_name = in_width_name
        self.in_widths, self.out_widths = in_widths, out_widths
        self.stride = stride
        d = {x.name: x for x in space.all_decisions()}
        self.expansions = d[f"{prefix}/expand"].choices
        self.start_kernels = d[f"{prefix}/start_dw"].choices
        self.middle_kernels = d[f"{prefix}/middle_dw"].choices
        self.has_present = f"{prefix}/present" in d
        # expanded width for every (input width choice, expansion choice)
        self.expanded = np.array(
            [[make_divisible(w * e) for e in self.expansions] for w in in_widths], np.float32
        )
        self.max_in, self.max_out = max(in_widths), max(out_widths)
        self.max_mid = int(self.expanded.max())
        ks = max(self.start_kernels + self.middle_kernels)
        self.dw_start = _ConvBN(
            0, max(self.start_kernels) or ks, 1, True, self.start_kernels, name="dw_start"
        )
        self.pw_exp = _ConvBN(self.max_mid, 1, 1, name="pw_exp")
        self.dw_mid = _ConvBN(
            0, max(self.middle_kernels) or ks, stride, True, self.middle_kernels, name="dw_mid"
        )
        self.pw_proj = _ConvBN(self.max_out, 1, 1, name="pw_proj")

    def call(self, x, choices):
        shortcut = x
        y = _optional(
            self.dw_start, x, choices.onehot(f"{self.prefix}/start_dw"), self.start_kernels
        )
        in_oh = choices.onehot(self.in_width_name)
        mid = tf.tensordot(
            in_oh, tf.tensordot(self.expanded, choices.onehot(f"{self.prefix}/expand"), 1), 1
        )
        y = tf.nn.relu(self.pw_exp(y)) * channel_mask(mid, self.max_mid)
        y = _optional(
            lambda t, oh: tf.nn.relu(self.dw_mid(t, oh)),
            y,
            choices.onehot(f"{self.prefix}/middle_dw"),
            self.middle_kernels,
        )
        out_oh = choices.onehot(f"{self.stage_prefix}/width")
        width = tf.tensordot(out_oh, tf.constant(self.out_widths, tf.float32), 1)
        y = self.pw_proj(y) * channel_mask(width, self.max_out)
        if self.stride == 1 and self.in_widths == self.out_widths:
            present = choices.onehot(f"{self.prefix}/present")[0] if self.has_present else 1.0
            return shortcut + present * y
        return y


class SupernetFused(keras.layers.Layer):
    """A fused stage at its largest width and expansion (FusedIB, or Conv-S's conv pair)."""

    def __init__(self, stage, in_widths, in_width_name, out_widths, space, **kw):
        super().__init__(**kw)
        d = {x.name: x for x in space.all_decisions()}
        self.stage = stage
        self.expansions = d[f"stage{stage}/expand"].choices
        self.in_width_name = in_width_name
        self.expanded = np.array(
            [[make_divisible(w * e) for e in self.expansions] for w in in_widths], np.float32
        )
        self.out_widths = out_widths
        self.max_mid, self.max_out = int(self.expanded.max()), max(out_widths)
        self.pair = space.fused_block == "conv_pair"
        self.expand = _ConvBN(self.max_mid, 3, 2, name="expand")
        self.project = _ConvBN(self.max_out, 1, 1, name="project")

    def call(self, x, choices):
        in_oh = choices.onehot(self.in_width_name) if self.in_width_name else tf.constant([1.0])
        exp_oh = choices.onehot(f"stage{self.stage}/expand")
        mid = tf.tensordot(in_oh, tf.tensordot(self.expanded, exp_oh, 1), 1)
        y = tf.nn.relu(self.expand(x)) * channel_mask(mid, self.max_mid)
        y = self.project(y)
        if self.pair:
            y = tf.nn.relu(y)
        width = tf.tensordot(
            choices.onehot(f"stage{self.stage}/width"), tf.constant(self.out_widths, tf.float32), 1
        )
        return y * channel_mask(width, self.max_out)


class Supernet(keras.Model):
    """The supernet of `space`: call(images, indices) -> logits of the sampled architecture.

    Args:
      space: a `mobilenetv4.search_space.SearchSpace` (its searched decisions are the indices).
      num_classes: classifier outputs.
      dropout: dropout before the classifier.
    """

    def __init__(self, space, num_classes, dropout=0.0, **kw):
        super().__init__(**kw)
        self.space = space
        self.num_decisions = len(space.decisions)
        self.stem = _ConvBN(space.stem_filters, 3, 2, name="stem")
        self.blocks = []
        in_widths, in_name = (space.stem_filters,), None
        for s in range(1, space.fused_stages + 1):
            widths = tuple(
                make_divisible(space.base_filters[s - 1] * m) for m in space.width_multipliers
            )
            self.blocks.append(
                SupernetFused(s, in_widths, in_name, widths, space, name=f"stage{s}_block0")
            )
            in_widths, in_name = widths, f"stage{s}/width"
        for i, n in enumerate(space.max_blocks):
            s = space.fused_stages + 1 + i
            widths = tuple(
                make_divisible(space.base_filters[s - 1] * m) for m in space.width_multipliers
            )
            for b in range(n):
                self.blocks.append(
                    SupernetUIB(
                        f"stage{s}/block{b}",
                        f"stage{s}",
                        in_name,
                        in_widths,
                        widths,
                        space,
                        2 if b == 0 else 1,
                        name=f"stage{s}_block{b}",
                    )
                )
                in_widths, in_name = widths, f"stage{s}/width"
        self.head_conv = _ConvBN(960, 1, 1, name="head_conv")
        self.head = _ConvBN(1280, 1, 1, name="head")
        self.dropout = keras.layers.Dropout(dropout)
        self.classifier = keras.layers.Dense(num_classes, name="classifier")

    def call(self, images, indices, training=False):
        choices = _Choices(self.space, indices)
        x = tf.nn.relu(self.stem(images))
        for block in self.blocks:
            x = block(x, choices)
        x = tf.nn.relu(self.head_conv(x))
        x = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
        x = tf.nn.relu(self.head(x))
        x = tf.reshape(x, [-1, 1280])
        return self.classifier(self.dropout(x, training=training))
