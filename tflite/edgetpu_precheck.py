"""A PREDICTION of which ops `edgetpu_compiler` would leave on the CPU, from Coral's documented model
requirements (coral.ai/docs/edgetpu/models-intro), without the compiler (it is not installable
here). Not the compiler's verdict: run `tflite.export --edgetpu` where it is installed for that.

    python -m tflite.edgetpu_precheck MODEL.tflite [--json]

Rules checked, per op in graph order:
  full-integer   every tensor the op reads or writes is 8-bit quantized (int32 biases allowed)
  static shapes  no dimension unknown at compile time (shape_signature -1)
  dimensions     tensors of more than 3 dimensions may have only the 3 innermost larger than 1
  supported op   in Coral's list of supported operations (BATCH_MATMUL, HARD_SWISH, DEQUANTIZE, ...
                 are not), with the documented limits (MEAN and PAD along x/y only)
  one segment    the compiler maps one segment: the first op that fails a rule and every op after
                 it run on the CPU, though supported (QUANTIZE at the model's input/output is an io
                 conversion and does not end the segment)
Exit code 0 when every op is predicted on the Edge TPU, 1 when some would fall back.
"""

import collections
import json

import numpy as np

from mobilenetv4 import cli
from tflite import runtime

# Coral's supported-operations table (TFLite builtin names).
SUPPORTED = {
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXPAND_DIMS",
    "FULLY_CONNECTED", "L2_NORMALIZATION", "LOGISTIC", "LSTM", "MAXIMUM", "MAX_POOL_2D", "MEAN",
    "MINIMUM", "MUL", "PACK", "PAD", "PRELU", "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN", "RELU",
    "RELU6", "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RSQRT",
    "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT", "SQUEEZE", "STRIDED_SLICE", "SUB", "SUM",
    "SQUARED_DIFFERENCE", "TANH", "TRANSPOSE", "TRANSPOSE_CONV",
}  # fmt: skip
EIGHT_BIT = (np.int8, np.uint8)


def _reasons(op, tensors, interp, activations) -> list[str]:
    name = op["op_name"]
    reasons = []
    if name not in SUPPORTED:
        reasons.append(f"{name} is not in Coral's supported operations")
    for index in [*op["inputs"], *op["outputs"]]:
        if index < 0:
            continue
        t = tensors[int(index)]
        dtype = np.dtype(t["dtype"])
        is_bias = dtype == np.int32 and name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
        if dtype not in [np.dtype(d) for d in EIGHT_BIT] and not is_bias and dtype != np.int32:
            reasons.append(f"a {dtype.name} tensor (not 8-bit quantized)")
            break
        if int(index) not in activations:
            continue  # weights and biases: constant, any rank
        if any(d < 0 for d in t.get("shape_signature", t["shape"])):
            reasons.append("a dynamic tensor shape")
            break
        shape = [int(d) for d in t["shape"]]
        if len(shape) > 3 and any(d > 1 for d in shape[:-3]):
            reasons.append(f"a {len(shape)}-d tensor with more than the 3 innermost dims > 1")
            break
    if name in ("MEAN", "PAD") and not reasons:
        reasons += _xy_only(op, tensors, interp)
    return reasons


def _xy_only(op, tensors, interp) -> list[str]:
    """MEAN reduces, PAD pads along x and/or y (axes 1, 2 of NHWC) only."""
    try:
        arg = interp.get_tensor(int(op["inputs"][1]))
    except ValueError:
        return [f"{op['op_name']} has a non-constant axis/padding argument"]
    if op["op_name"] == "MEAN":
        axes = {int(a) % 4 for a in np.ravel(arg)}
        return [] if axes <= {1, 2} else [f"MEAN over axes {sorted(axes)} (only x/y are supported)"]
    pads = np.asarray(arg).reshape(-1, 2)
    bad = [i for i, p in enumerate(pads) if i not in (1, 2) and np.any(p)]
    return [f"PAD along dimension(s) {bad} (only x/y are supported)"] if bad else []


def predict(path: str) -> dict:
    interp = runtime.load_interpreter(path, xnnpack=False)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    ops = interp._get_ops_details()
    graph_io = {d["index"] for d in interp.get_input_details() + interp.get_output_details()}
    activations = graph_io | {int(t) for op in ops for t in op["outputs"]}
    rows, segment_ended_by = [], None
    for op in ops:
        reasons = _reasons(op, tensors, interp, activations)
        at_io = op["op_name"] == "QUANTIZE" and (
            set(int(i) for i in op["inputs"]) & graph_io
            or set(int(i) for i in op["outputs"]) & graph_io
        )
        if at_io:
            where, why = "cpu", "QUANTIZE at the model's input/output (io conversion)"
        elif reasons:
            where, why = "cpu", "; ".join(reasons)
            segment_ended_by = segment_ended_by or f"op {op['index']} {op['op_name']}"
        elif segment_ended_by:
            where, why = "cpu", f"after {segment_ended_by} (the compiler maps one segment)"
        else:
            where, why = "edgetpu", ""
        rows.append({"index": op["index"], "op": op["op_name"], "where": where, "reason": why})
    on_tpu = sum(r["where"] == "edgetpu" for r in rows)
    return {
        "model": path,
        "prediction": True,
        "ops": len(rows),
        "predicted_on_edgetpu": on_tpu,
        "predicted_on_cpu": len(rows) - on_tpu,
        "first_fallback": segment_ended_by,
        "rows": rows,
    }


def format_prediction(result: dict) -> str:
    lines = [
        f"EdgeTPU PREDICTION (Coral's documented rules, not the compiler): "
        f"{result['predicted_on_edgetpu']}/{result['ops']} ops on the Edge TPU, "
        f"{result['predicted_on_cpu']} on the CPU"
        + (f"; the segment ends at {result['first_fallback']}" if result["first_fallback"] else "")
    ]
    reasons = collections.Counter(
        (r["op"], r["reason"]) for r in result["rows"] if r["where"] == "cpu"
    )
    lines += [f"  {op:<22} x{n:<4} {why}" for (op, why), n in reasons.most_common()]
    return "\n".join(lines)


def main(argv=None):
    p = cli.ArgumentParser("python -m tflite.edgetpu_precheck", __doc__)
    p.add_argument("model", help="a .tflite file")
    p.add_argument("--json", action="store_true", help="print the prediction as JSON")
    args = p.parse_args(argv)
    result = predict(args.model)
    print(json.dumps(result, indent=2) if args.json else format_prediction(result))
    return result["predicted_on_cpu"] == 0


if __name__ == "__main__":
    cli.run(main)
