"""Per-layer roofline ops of a built tf_keras model.

MACs, parameters and shapes come from the model library's count, `mobilenetv4.costs.layer_costs`
(conv, depthwise conv, dense and attention matmuls); the byte conventions of `ops.py` turn them
into roofline ops. Pooling layers (no MACs, but they read a whole feature map) are added from the
model's own layers, in network order.
"""

import math
from typing import List

import tf_keras as keras

from mobilenetv4.roofline.ops import RooflineOp, make_op

POOLING_LAYERS = (
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.AveragePooling2D,
    keras.layers.MaxPooling2D,
)


def _shapes(shape):
    """One shape or a list of shapes -> list of shapes."""
    if shape and isinstance(shape[0], (tuple, list)):
        return [tuple(s) for s in shape]
    return [tuple(shape)]


def attention_activation_shapes(layer, input_shape):
    """(read, written) tensor shapes of the two attention matmuls of one attention core.

    QK^T reads Q [n*heads, dk] and K [m*kv_heads, dk] and writes logits [heads, n, m]; AV reads
    the (softmaxed) logits and V [m*kv_heads, dv] and writes O [n*heads, dv]. The op's activation
    bytes are all of these: the logits are written once and read once.
    """
    n = int(input_shape[1]) * int(input_shape[2])
    m = math.ceil(int(input_shape[1]) / layer.kv_strides) * math.ceil(
        int(input_shape[2]) / layer.kv_strides
    )
    h, dk, dv = layer.num_heads, layer.key_dim, layer.value_dim
    kv_heads = h if layer.attention_type == "mhsa" else 1
    logits = (h, n, m)
    reads = [(n * h, dk), (m * kv_heads, dk), logits, (m * kv_heads, dv)]
    return reads, [logits, (n * h, dv)]


def _op_shapes(c):
    """(shapes read, shapes written, kind) of one LayerCost under the byte conventions."""
    if c.kind == "attention_matmul":
        reads, writes = attention_activation_shapes(c.layer, c.input_shape)
        return reads, writes, c.kind
    kind = c.kind
    groups = getattr(c.layer, "groups", 1)
    if kind == "conv" and groups > 1 and groups == int(c.input_shape[-1]):
        kind = "dwconv"  # a Conv2D with one group per channel (ConvNeXt's) is a depthwise conv
    elif (
        kind == "conv"
        and math.prod(c.output_shape[1:-1]) == 1
        and math.prod(c.layer.kernel_size) == 1
    ):
        kind = "dense"  # a 1x1 conv on a 1x1 map (heads, SE layers) is an FC layer
    elif kind == "dense" and math.prod(c.input_shape[1:-1]) > 1:
        kind = "conv"  # a Dense over every pixel of a map (ConvNeXt's) is a 1x1 conv
    return _shapes(c.input_shape), _shapes(c.output_shape), kind


def _top_level_index(model: keras.Model):
    """Position of each top-level layer in the model, for ordering ops."""
    return {layer.name: i for i, layer in enumerate(model.layers)}


def _pooling_ops(model: keras.Model, precision: str, index) -> List[tuple]:
    ops = []
    for layer in model.layers:
        if isinstance(layer, POOLING_LAYERS):
            op = make_op(
                layer.name,
                layer.name,
                "pool",
                0,
                0,
                _shapes(layer.input_shape),
                _shapes(layer.output_shape),
                precision,
            )
            ops.append((index[layer.name], op))
    return ops


def roofline_ops(model: keras.Model, precision: str = "int8") -> List[RooflineOp]:
    """Roofline ops of `model` in network order, with bytes at `precision` (int8/fp16/fp32)."""
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"expected a built tf_keras Model, got {type(model).__name__}; build it "
            "with mobilenetv4.create_model(...) or tf_keras.applications.*"
        )
    if any(d is None for d in _shapes(model.input_shape)[0][1:]):
        raise ValueError(
            f"{model.name} takes inputs of shape {model.input_shape}; bytes depend "
            "on the resolution, so build it with a fixed input_shape=(H, W, 3)"
        )
    from mobilenetv4.costs import layer_costs

    index = _top_level_index(model)
    ranked = []
    for order, c in enumerate(layer_costs(model)):
        reads, writes, kind = _op_shapes(c)
        op = make_op(c.block, c.name, kind, c.macs, c.params, reads, writes, precision)
        ranked.append(((index.get(c.block, -1), order), op))
    # A pooling layer goes after every costed op of the top-level layers before it.
    for idx, op in _pooling_ops(model, precision, index):
        ranked.append(((idx, float("inf")), op))
    ranked.sort(key=lambda item: item[0])
    return [op for _, op in ranked]
