"""Normalisation folded into the first convolution, for exports that take [0, 255] pixels.

`tflite.export.with_pixel_input` uses `FoldedStem` for our models: (x - mean) / std followed by
the stem's zero-padded convolution equals the stem's convolution with kernel / std, a bias of
-sum(kernel * mean / std), on the pixels padded with the mean pixel. No op runs over the pixels
before the first convolution.
"""

import numpy as np
import tensorflow as tf
import tf_keras as keras


def foldable_stem(model):
    """Our model's stem (a regular-conv ConvBN that alone reads the input), else None."""
    from mobilenetv4.layers.conv_bn import ConvBN

    try:
        stem = model.get_layer("stem")
    except ValueError:
        return None
    if not isinstance(stem, ConvBN) or stem.depthwise or len(model.inputs) != 1:
        return None
    if stem.input is not model.inputs[0] or len(model.inputs[0].node.layer._outbound_nodes) != 1:
        return None
    return stem


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF's SAME padding (before, after) of one spatial side."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class FoldedStem(keras.layers.Layer):
    """Our ConvBN stem applied to [0, 255] pixels, with the normalisation (x - mean) / std
    folded into its convolution: kernel / std per input channel, a bias of
    -sum(kernel * mean / std), and the image padded with the mean pixel (normalised zero)
    before a VALID convolution, which is what SAME (or symmetric) zero padding of the
    normalised image is. In the graph: CONCATENATION of constant mean-pixel strips (only the
    sides that are padded: bottom and right for a stride-2 SAME stem on an even input) and one
    CONV_2D; no op over all pixels. Exact in float (the INT8 graph rounds the mean to whole
    pixels in its strips: under 0.5 / 255 of the input range). Shares the stem's variables.
    """

    def __init__(self, stem, mean, std, exact_border=True, **kwargs):
        super().__init__(**kwargs)
        self.stem = stem
        self.exact_border = exact_border
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)

    def _pads(self, height, width):
        conv = self.stem.conv
        if self.stem.pad is not None:  # symmetric: ZeroPadding2D then a VALID conv
            return tuple(tuple(p) for p in self.stem.pad.padding)
        (kh, kw), (sh, sw) = conv.kernel_size, conv.strides
        return same_pads(height, kh, sh), same_pads(width, kw, sw)

    def call(self, x, training=None):
        conv = self.stem.conv
        (top, bottom), (left, right) = self._pads(x.shape[1], x.shape[2])
        kernel = conv.kernel / self.std[None, None, :, None]
        bias = -tf.reduce_sum(kernel * self.mean[None, None, :, None], axis=(0, 1, 2))
        if not self.exact_border:  # zero pixels on the border (a black frame): not exact
            same = self.stem.pad is None
            pads = "SAME" if same else [[0, 0], [top, bottom], [left, right], [0, 0]]
            return self._after_conv(tf.nn.conv2d(x, kernel, conv.strides, pads) + bias, training)
        mean = tf.constant(self.mean)

        def strip(rows, cols):
            return tf.broadcast_to(mean, (tf.shape(x)[0], rows, cols, 3))

        if top or bottom:
            parts = [strip(top, x.shape[2])] if top else []
            parts += [x] + ([strip(bottom, x.shape[2])] if bottom else [])
            x = tf.concat(parts, axis=1)
        if left or right:
            parts = [strip(x.shape[1], left)] if left else []
            parts += [x] + ([strip(x.shape[1], right)] if right else [])
            x = tf.concat(parts, axis=2)
        return self._after_conv(tf.nn.conv2d(x, kernel, conv.strides, "VALID") + bias, training)

    def _after_conv(self, x, training):
        stem = self.stem
        if stem.bn is not None:
            x = stem.bn(x, training=training)
        if stem.act is not None:
            x = stem.act(x)
        return stem.aa(x) if stem.aa is not None else x
