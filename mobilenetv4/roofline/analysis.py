"""Per-layer roofline ops of a built tf_keras model.

MACs, parameters and shapes come from the model library's count, `mobilenetv4.costs.layer_costs`
(conv, depthwise conv, dense and attention matmuls); the byte conventions of `ops.py` turn them
into roofline ops. Pooling layers (no MACs, but they read a whole feature map) are added from the
model's own layers, in network order.
"""
from typing import List

import tf_keras as keras

from mobilenetv4.roofline.ops import RooflineOp, make_op

POOLING_LAYERS = (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D,
                  keras.layers.AveragePooling2D, keras.layers.MaxPooling2D)


def _shapes(shape):
    """One shape or a list of shapes -> list of shapes."""
    if shape and isinstance(shape[0], (tuple, list)):
        return [tuple(s) for s in shape]
    return [tuple(shape)]


def _top_level_index(model: keras.Model):
    """Position of each top-level layer in the model, for ordering ops."""
    return {layer.name: i for i, layer in enumerate(model.layers)}


def _pooling_ops(model: keras.Model, precision: str, index) -> List[tuple]:
    ops = []
    for layer in model.layers:
        if isinstance(layer, POOLING_LAYERS):
            op = make_op(layer.name, layer.name, "pool", 0, 0, _shapes(layer.input_shape),
                         layer.output_shape, precision)
            ops.append((index[layer.name], op))
    return ops


def roofline_ops(model: keras.Model, precision: str = "int8") -> List[RooflineOp]:
    """Roofline ops of `model` in network order, with bytes at `precision` (int8/fp16/fp32)."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"expected a built tf_keras Model, got {type(model).__name__}; build it "
                        "with mobilenetv4.create_model(...) or tf_keras.applications.*")
    from mobilenetv4.costs import layer_costs
    index = _top_level_index(model)
    ranked = []
    for order, c in enumerate(layer_costs(model)):
        op = make_op(c.block, c.name, c.kind, c.macs, c.params, _shapes(c.input_shape),
                     c.output_shape, precision)
        ranked.append(((index.get(c.block, -1), order), op))
    # A pooling layer goes after every costed op of the top-level layers before it.
    for idx, op in _pooling_ops(model, precision, index):
        ranked.append(((idx, float("inf")), op))
    ranked.sort(key=lambda item: item[0])
    return [op for _, op in ranked]
