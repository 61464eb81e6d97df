"""Per-layer cost (MACs, parameters, shapes) measured from a built model's own layers.

The model runs once on a zero batch of one while every convolution, dense layer and attention
core records the shapes it actually saw, so the count follows whatever the builder made
(width multipliers, padding, non-square inputs) rather than a second copy of the tables.
Counted: Conv2D, DepthwiseConv2D, Dense and the two attention matmuls (QK^T and AV), the same
set timm's numbers are quoted for, and SeparableConv2D (depthwise + pointwise, as in Model Garden's
FPN and RetinaNet head), so a whole detector counts too. Not counted: BN, activations, pooling,
adds, softmax.
"""

import contextlib
import dataclasses
from typing import Tuple

import numpy as np
import tensorflow as tf
import tf_keras as keras

from mobilenetv4.layers.attention import MultiQueryAttention2D

KINDS = ("conv", "dwconv", "dense", "attention_matmul", "sepconv")


@dataclasses.dataclass(frozen=True)
class LayerCost:
    block: str  # top-level layer of the model that owns this op (e.g. "stage3_block4")
    name: str  # path of the op inside the model (e.g. "stage3_block4/pw_exp/conv")
    kind: str  # one of KINDS
    input_shape: Tuple[int, ...]  # NHWC (or NC for dense), batch of one
    output_shape: Tuple[int, ...]
    macs: int
    params: int  # weights of this op (attention matmuls have none)
    layer: keras.layers.Layer = dataclasses.field(repr=False, compare=False, default=None)


def _kind(layer):
    if isinstance(layer, keras.layers.SeparableConv2D):
        return "sepconv"
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return "dwconv"
    if isinstance(layer, keras.layers.Conv2D):
        return "conv"
    if isinstance(layer, keras.layers.Dense):
        return "dense"
    if isinstance(layer, MultiQueryAttention2D):
        return "attention_matmul"
    return None


def _macs(layer, kind, in_shape, out_shape):
    if kind == "attention_matmul":
        return layer.matmul_macs(in_shape)
    if kind == "sepconv":  # depthwise at the output resolution, then the 1x1 pointwise
        return int(np.prod(out_shape[1:3])) * (
            int(np.prod(layer.depthwise_kernel.shape)) + int(np.prod(layer.pointwise_kernel.shape))
        )
    kernel = layer.depthwise_kernel if kind == "dwconv" else layer.kernel
    if kind == "dense":
        spatial = int(np.prod(out_shape[1:-1])) if len(out_shape) > 2 else 1
        return spatial * int(np.prod(kernel.shape))
    # conv: every output pixel applies the whole kernel (kh * kw * cin * cout / groups).
    out_pixels = int(np.prod(out_shape[1:3]))
    if kind == "dwconv":
        return out_pixels * int(np.prod(kernel.shape))
    return out_pixels * int(np.prod(kernel.shape))  # kernel shape already has cin / groups


def _params(layer, kind):
    if kind == "attention_matmul":
        return 0
    return int(sum(np.prod(w.shape) for w in layer.trainable_weights))


def _owners(model):
    """Maps every nested layer to (top-level block name, path)."""
    owners = {}

    def walk(layer, block, path):
        for child in layer._flatten_layers(include_self=False, recursive=False):  # pylint: disable=protected-access
            child_path = f"{path}/{child.name}"
            if id(child) not in owners:
                owners[id(child)] = (block, child_path, child)
                walk(child, block, child_path)

    for top in model.layers:
        owners[id(top)] = (top.name, top.name, top)
        walk(top, top.name, top.name)
    return owners


@contextlib.contextmanager
def _recording(targets, records):
    """Temporarily wraps `call` of each target layer to record (input shape, output shape)."""
    originals = {}
    for layer in targets:
        original = layer.call

        def wrapped(inputs, *args, _layer=layer, _original=original, **kwargs):
            outputs = _original(inputs, *args, **kwargs)
            records.append((_layer, tuple(inputs.shape), tuple(outputs.shape)))
            return outputs

        originals[layer] = original
        layer.call = wrapped
    try:
        yield
    finally:
        for layer, original in originals.items():
            layer.call = original
            layer.__dict__.pop("call", None)


def _probe_input(model, input_shape):
    shape = tuple(input_shape or model.input_shape[1:])
    if any(dim is None for dim in shape):
        raise ValueError(
            f"{model.name} takes inputs of shape {model.input_shape}; "
            "pass input_shape=(H, W, C) to count its costs at one size"
        )
    dtype = model.inputs[0].dtype if model.inputs else tf.float32
    return tf.zeros((1,) + shape, dtype=dtype)


def layer_costs(model, input_shape=None):
    """Returns one LayerCost per conv / depthwise conv / dense op and per attention core, in order.

    Args:
      model: a built tf_keras model (ours, keras.applications, or any made of standard layers).
      input_shape: (H, W, C) to measure at, required when the model accepts any size.

    Returns:
      A list of LayerCost in execution order (the model runs once on a zero batch of one).

    Raises:
      ValueError: the model accepts any size and no `input_shape` was given.
    """
    owners = _owners(model)
    targets = [layer for _, _, layer in owners.values() if _kind(layer)]
    records = []
    with _recording(targets, records):
        model(_probe_input(model, input_shape), training=False)
    costs = []
    for layer, in_shape, out_shape in records:
        kind = _kind(layer)
        block, path, _ = owners[id(layer)]
        costs.append(
            LayerCost(
                block,
                path,
                kind,
                in_shape,
                out_shape,
                int(_macs(layer, kind, in_shape, out_shape)),
                _params(layer, kind),
                layer,
            )
        )
    return costs


def total_macs(model, input_shape=None):
    """The sum of `layer_costs(model, input_shape)` MACs.

    Args:
      model: a built tf_keras model.
      input_shape: (H, W, C) to measure at, required when the model accepts any size.
    """
    return sum(cost.macs for cost in layer_costs(model, input_shape))


def count_params(model, trainable=True):
    """Parameter count, as timm quotes it.

    Args:
      model: a built tf_keras model (or layer).
      trainable: count trainable weights only (BN gamma/beta included, BN moving statistics not);
        False counts every weight.
    """
    weights = model.trainable_weights if trainable else model.weights
    return int(sum(np.prod(w.shape) for w in weights))
