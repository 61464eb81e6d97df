"""Graph analysis of a .tflite: op histogram, TRANSPOSE count, XNNPACK partitions, size, MACs,
and numerical fidelity of an exported model against its float Keras source.

Partitions: with the default delegates applied, `_get_ops_details()` lists the original ops plus
one DELEGATE node per XNNPACK partition. Ops that XNNPACK did not take are found by walking back
from the graph outputs and the DELEGATE inputs: every tensor a partition or an output needs must
come either from a partition or from an op left on the builtin kernels.
"""

import collections
import dataclasses
import os

import numpy as np

from tflite import runtime


@dataclasses.dataclass
class GraphStats:
    size_bytes: int
    op_histogram: dict[str, int]  # ops of the converted graph, before delegation
    transposes: int
    delegate_partitions: int  # DELEGATE nodes after XNNPACK is applied
    undelegated_ops: dict[str, int]  # ops left on the builtin kernels
    precision: str  # INT8 (int8 conv weights), FP16 (fp16 weights) or FP32
    params: int  # elements of constant tensors
    macs: int  # CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, BATCH_MATMUL
    input: dict
    output: dict

    def to_dict(self):
        return dataclasses.asdict(self)


def _tensor_shapes(interp) -> dict[int, tuple]:
    return {t["index"]: tuple(int(d) for d in t["shape"]) for t in interp.get_tensor_details()}


def _macs(ops, shapes) -> int:
    total = 0
    for op in ops:
        name = op["op_name"]
        if name not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL"):
            continue
        out = int(np.prod(shapes[op["outputs"][0]]))
        w = shapes[op["inputs"][1]]
        if name == "CONV_2D":  # filter [O, kh, kw, I]
            total += out * w[1] * w[2] * w[3]
        elif name == "DEPTHWISE_CONV_2D":  # filter [1, kh, kw, C]
            total += out * w[1] * w[2]
        elif name == "FULLY_CONNECTED":  # weights [O, I]
            total += out * w[1]
        else:  # contracted dim: lhs last axis (adj_x unused by TF)
            total += out * shapes[op["inputs"][0]][-1]
    return total


def _constant_elements(interp, ops) -> int:
    produced = {int(t) for op in ops for t in op["outputs"]}
    graph_inputs = {d["index"] for d in interp.get_input_details()}
    consumed = {int(t) for op in ops for t in op["inputs"] if t >= 0}
    shapes = _tensor_shapes(interp)
    return int(sum(np.prod(shapes[t]) for t in consumed - produced - graph_inputs))


def precision(interp, ops) -> str:
    dtypes = {t["index"]: np.dtype(t["dtype"]) for t in interp.get_tensor_details()}
    weights = {
        dtypes[int(op["inputs"][1])]
        for op in ops
        if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
    }
    if np.dtype(np.int8) in weights:
        return "INT8"
    if np.dtype(np.float16) in set(dtypes.values()):
        return "FP16"
    return "FP32"


def undelegated_ops(delegated_interp) -> collections.Counter:
    """Histogram of the original ops that execute outside any DELEGATE node."""
    ops = delegated_interp._get_ops_details()
    delegates = [op for op in ops if op["op_name"] == "DELEGATE"]
    originals = [op for op in ops if op["op_name"] != "DELEGATE"]
    from_delegate = {int(t) for op in delegates for t in op["outputs"]}
    producer = {int(t): op for op in originals for t in op["outputs"]}
    needed = [d["index"] for d in delegated_interp.get_output_details()]
    needed += [int(t) for op in delegates for t in op["inputs"] if t >= 0]
    executed, seen = {}, set()
    while needed:
        t = needed.pop()
        if t in seen or t in from_delegate or t not in producer:
            continue  # a partition output, a graph input or a constant
        seen.add(t)
        op = producer[t]
        if op["index"] not in executed:
            executed[op["index"]] = op
            needed.extend(int(i) for i in op["inputs"] if i >= 0)
    return collections.Counter(op["op_name"] for op in executed.values())


def _io(detail) -> dict:
    scale, zero = detail["quantization"]
    return {
        "shape": [int(d) for d in detail["shape"]],
        "dtype": np.dtype(detail["dtype"]).name,
        "scale": float(scale),
        "zero_point": int(zero),
    }


def graph_stats(model_path: str) -> GraphStats:
    data = runtime.read_model(model_path)
    plain = runtime.load_interpreter(data, xnnpack=False, name=model_path)
    ops = plain._get_ops_details()
    hist = collections.Counter(op["op_name"] for op in ops)
    delegated = runtime.load_interpreter(data, xnnpack=True, name=model_path)
    partitions = sum(op["op_name"] == "DELEGATE" for op in delegated._get_ops_details())
    return GraphStats(
        size_bytes=os.path.getsize(model_path),
        op_histogram=dict(sorted(hist.items(), key=lambda kv: (-kv[1], kv[0]))),
        transposes=hist.get("TRANSPOSE", 0),
        delegate_partitions=int(partitions),
        undelegated_ops=dict(sorted(undelegated_ops(delegated).items())),
        precision=precision(plain, ops),
        params=_constant_elements(plain, ops),
        macs=_macs(ops, _tensor_shapes(plain)),
        input=_io(plain.get_input_details()[0]),
        output=_io(plain.get_output_details()[0]),
    )


def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio of `test` against `reference`, in dB (inf if equal)."""
    reference = np.asarray(reference, np.float64)
    noise = float(np.sum((reference - np.asarray(test, np.float64)) ** 2))
    signal = float(np.sum(reference**2))
    if noise == 0.0:
        return float("inf")
    return 10.0 * np.log10(signal / noise)


def top1_agreement(reference: np.ndarray, test: np.ndarray) -> float:
    return float(np.mean(np.argmax(reference, -1) == np.argmax(test, -1)))


def fidelity(keras_logits: np.ndarray, tflite_logits: np.ndarray) -> dict:
    return {
        "images": int(len(keras_logits)),
        "top1_agreement": top1_agreement(keras_logits, tflite_logits),
        "sqnr_db": sqnr_db(keras_logits, tflite_logits),
        "max_abs_diff": float(np.max(np.abs(keras_logits - tflite_logits))),
    }


def format_report(
    stats: GraphStats, fid: dict | None = None, title: str = "", details: list[str] | None = None
) -> str:
    """Markdown report printed after export and saved next to the model; `details` are extra
    bullet lines (which weights, the build record) placed first."""
    lines = [f"## {title}" if title else "## TFLite report", ""]
    lines += [f"- {line}" for line in details or ()]
    lines += [
        f"- {stats.precision}, size: {stats.size_bytes / 2**20:.2f} MiB, params {stats.params / 1e6:.2f} M, "
        f"MACs {stats.macs / 1e9:.3f} G",
        f"- input {stats.input['dtype']}{stats.input['shape']} (scale {stats.input['scale']:.6g}, "
        f"zero point {stats.input['zero_point']}); output {stats.output['dtype']}{stats.output['shape']}",
        f"- TRANSPOSE ops: {stats.transposes}",
        f"- XNNPACK delegate partitions: {stats.delegate_partitions}",
        "- ops left outside XNNPACK: "
        + (", ".join(f"{k} x{v}" for k, v in stats.undelegated_ops.items()) or "none"),
    ]
    if fid:
        lines.append(
            f"- fidelity vs float Keras on {fid['images']} held-out images: top-1 agreement "
            f"{100 * fid['top1_agreement']:.1f}%, logits SQNR {fid['sqnr_db']:.1f} dB, "
            f"max |diff| {fid['max_abs_diff']:.4g}"
            + (f" ({fid['note']})" if fid.get("note") else "")
        )
        if fid.get("keras_top1") is not None:
            lines.append(
                f"- held-out top-1 ({fid.get('heldout') or 'labelled images'}): Keras "
                f"{100 * fid['keras_top1']:.1f}%, TFLite {100 * fid['tflite_top1']:.1f}%"
            )
    lines += ["", "| op | count |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in stats.op_histogram.items()]
    return "\n".join(lines) + "\n"
