"""Re-quantizes the right operands of int8 BATCH_MATMULs symmetrically (zero point 0).

XNNPACK delegates an int8 BATCH_MATMUL only when its right operand has zero point 0 (it treats
that operand like a weight matrix); the converter calibrates activations asymmetrically, so a
fully quantized attention core (K and V are activations) stays on the builtin kernels. This pass
gives each such operand the symmetric grid covering its calibrated range: scale = max|range| /
127, zero point 0. It is a valid requantization because every int8 kernel reads its tensors'
parameters, except ops that require their input and output to share them (RESHAPE, TRANSPOSE):
those are followed in both directions so a whole tied group gets the same new parameters.
The cost is at most one bit of resolution on K and V (when the range was one-sided).
"""

import collections

from tflite import ToolError

# Ops whose output must carry exactly their input's quantization parameters.
_TIED = ("RESHAPE", "TRANSPOSE", "SQUEEZE", "EXPAND_DIMS")


def _op_names(model):
    from tensorflow.lite.python import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    return [names.get(max(oc.builtinCode, oc.deprecatedBuiltinCode)) for oc in model.operatorCodes]


def _tied_group(tensor, producers, consumers, names, ops):
    """`tensor` and every tensor joined to it through tied ops, in either direction."""
    group, todo = set(), [tensor]
    while todo:
        t = todo.pop()
        if t in group:
            continue
        group.add(t)
        op = producers.get(t)
        if op is not None and names[ops[op].opcodeIndex] in _TIED:
            todo.append(ops[op].inputs[0])
        for op in consumers.get(t, ()):
            if names[ops[op].opcodeIndex] in _TIED and ops[op].inputs[0] == t:
                todo.extend(ops[op].outputs)
    return group


def symmetric_matmul_operands(data: bytes) -> bytes:
    """The model with every int8 BATCH_MATMUL's right operand (and its tied group) symmetric."""
    import numpy as np
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    try:
        model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    except Exception as e:  # the flatbuffer library raises assorted errors on bad bytes
        raise ToolError(f"cannot parse the TFLite model to requantize it: {e}") from None
    names = _op_names(model)
    for graph in model.subgraphs:
        ops = graph.operators
        producers = {t: i for i, op in enumerate(ops) for t in op.outputs}
        consumers = collections.defaultdict(list)
        for i, op in enumerate(ops):
            for t in op.inputs:
                consumers[t].append(i)
        boundary = set(graph.inputs) | set(graph.outputs)
        for op in ops:
            if names[op.opcodeIndex] != "BATCH_MATMUL":
                continue
            rhs = graph.tensors[op.inputs[1]]
            q = rhs.quantization
            if (
                rhs.type != schema.TensorType.INT8
                or q is None
                or q.scale is None
                or len(q.scale) != 1
            ):
                continue
            if int(q.zeroPoint[0]) == 0:
                continue
            group = _tied_group(op.inputs[1], producers, consumers, names, ops)
            if group & boundary or any(t not in producers for t in group):
                continue  # a graph input/output or a constant: leave its parameters alone
            scale, zero = float(q.scale[0]), int(q.zeroPoint[0])
            new_scale = max(abs(scale * (-128 - zero)), abs(scale * (127 - zero))) / 127.0
            for t in group:
                tq = graph.tensors[t].quantization
                tq.scale = np.array([new_scale], np.float32)
                tq.zeroPoint = np.array([0], np.int64)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))
