"""Roofline ops: one layer's MACs and bytes, and the paper's Eq. 1 on them.

Byte conventions (paper Sec. 3 leaves them implicit; these are ours):
- Ops: every conv, depthwise conv, dense layer and attention core (its QK^T and AV matmuls as one
  op), plus pooling layers (0 MACs). BatchNorm and activations are taken as fused into the op
  before them (as TFLite does); residual adds, softmax and reshapes are not counted.
- WeightBytes = parameter count (kernel + bias) x bytes per value at the chosen precision;
  BatchNorm parameters fold into the preceding conv and add nothing.
- ActivationBytes = (elements read + elements written) x bytes per value, i.e. every input tensor
  of the op once plus its output once, for a batch of one. For an attention matmul both operands
  are activations (no weights).
- One precision for weights and activations: int8 = 1 byte, fp16 = 2, fp32 = 4.
Everything is counted as if each op reads its operands from and writes its result to main memory;
fusion and caching are outside the model, as in the paper.
"""

import dataclasses
import math
from typing import Sequence, Tuple

from mobilenetv4.cli import UserError  # a ValueError: one-line message, exit 2 in the CLIs

BYTES_PER_VALUE = {"int8": 1, "fp16": 2, "fp32": 4}


def bytes_per_value(precision: str) -> int:
    """Bytes of one weight or activation value at `precision` (int8, fp16 or fp32)."""
    try:
        return BYTES_PER_VALUE[precision]
    except KeyError:
        raise UserError(
            f"unknown precision {precision!r}; choose one of {', '.join(BYTES_PER_VALUE)}"
        ) from None


def num_elements(shape: Sequence) -> int:
    """Elements of one tensor; a leading None (batch) counts as 1."""
    dims = [1 if d is None else int(d) for d in shape]
    return math.prod(dims)


@dataclasses.dataclass(frozen=True)
class RooflineOp:
    """One op of the network as the roofline model sees it."""

    block: str
    name: str
    kind: str  # conv, dwconv, dense, attention_matmul, pool
    macs: int
    weight_bytes: int
    activation_bytes: int

    @property
    def bytes(self) -> int:
        return self.weight_bytes + self.activation_bytes

    @property
    def intensity(self) -> float:
        """Operational intensity, MACs per byte moved (paper Sec. 3)."""
        return self.macs / self.bytes if self.bytes else math.inf


def make_op(
    block,
    name,
    kind,
    macs,
    params,
    input_shapes: Sequence[Tuple],
    output_shapes: Sequence[Tuple],
    precision: str,
) -> RooflineOp:
    """Apply the byte conventions above to one layer's counts and tensor shapes (read, written)."""
    bpv = bytes_per_value(precision)
    activations = sum(num_elements(s) for s in list(input_shapes) + list(output_shapes))
    return RooflineOp(
        block=block,
        name=name,
        kind=kind,
        macs=int(macs),
        weight_bytes=int(params) * bpv,
        activation_bytes=activations * bpv,
    )


def op_time(op: RooflineOp, ridge_point: float, peak_macs: float = 1.0) -> float:
    """max(MACTime, MemTime) of Eq. 1.

    With PeakMemBW = PeakMACs / RP, MemTime = Bytes * RP / PeakMACs. With the default
    peak_macs=1 the result is in MAC-equivalents (at RP 0 it is the op's MAC count);
    pass the hardware's MACs per second to get seconds.
    """
    check_ridge_point(ridge_point)
    check_peak(peak_macs, "peak_macs")
    return max(op.macs, op.bytes * ridge_point) / peak_macs


def model_time(ops: Sequence[RooflineOp], ridge_point: float, peak_macs: float = 1.0) -> float:
    """Eq. 1: ModelTime = sum_i max(MACs_i / PeakMACs, Bytes_i / PeakMemBW)."""
    return sum(op_time(op, ridge_point, peak_macs) for op in ops)


def ridge_point(peak_macs: float, peak_mem_bw: float) -> float:
    """Ridge point of a device in MACs/byte: PeakMACs / PeakMemBW."""
    check_peak(peak_macs, "peak MACs/s")
    check_peak(peak_mem_bw, "peak memory bandwidth (bytes/s)")
    return peak_macs / peak_mem_bw


def check_ridge_point(ridge_point: float) -> None:
    """A ridge point is a finite number >= 0 MACs/byte (NaN and inf are refused)."""
    if not math.isfinite(ridge_point) or ridge_point < 0:
        raise UserError(f"ridge point must be a finite number >= 0 MACs/byte, got {ridge_point}")


def check_peak(value: float, what: str) -> None:
    """A peak rate is a finite number > 0 (NaN and inf are refused)."""
    if not math.isfinite(value) or value <= 0:
        raise UserError(f"{what} must be a finite number > 0, got {value}")
