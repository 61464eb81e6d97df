"""Costs of an architecture computed from its spec alone (no Keras model): fast enough for NAS.

The same ops, shapes, MACs and parameters that `mobilenetv4.costs.layer_costs` measures on a built
classifier, and the same roofline ops as `mobilenetv4.roofline.analysis.roofline_ops` (byte
conventions of `roofline.ops`), derived from the rows of a `specs.Architecture` the way the builder
lays them out: "same" padding (output = ceil(input / stride)), UIB stride on the middle DW when it
exists, expansion rounded with make_divisible, BN without bias folded into its conv.
Conv architectures only (Conv2D, FusedIB, UIB rows); tests/nas/test_costs.py checks every op
against the built models. Import needs no TensorFlow.
"""

import functools
import math
from typing import List, Tuple

from mobilenetv4 import specs
from mobilenetv4.roofline import ops as roofline_ops_lib
from mobilenetv4.search_space import make_divisible

# (block, name, kind, input_shape, output_shape, macs, params): kind as in roofline analysis
# (conv, dwconv, dense, pool); params are the op's kernel (+ bias) as costs.layer_costs counts.
Op = Tuple[str, str, str, Tuple[int, ...], Tuple[int, ...], int, int]


def _out(size, stride):
    return math.ceil(size / stride)


def _conv(block, name, h, w, cin, cout, k, stride, depthwise=False):
    ho, wo = _out(h, stride), _out(w, stride)
    if depthwise:
        cout = cin
        params = k * k * cin
    else:
        params = k * k * cin * cout
    op = (
        block,
        name,
        "dwconv" if depthwise else ("dense" if k == 1 and ho * wo == 1 else "conv"),
        (1, h, w, cin),
        (1, ho, wo, cout),
        ho * wo * params,
        params,
    )
    return op, ho, wo, cout


@functools.lru_cache(maxsize=65536)
def block_ops(block_spec, block_name, h, w, cin) -> Tuple[Tuple[Op, ...], int, int, int]:
    """Ops of one block row at input (h, w, cin) and the output (h, w, c).

    Args:
      block_spec: a specs.Conv2D / FusedIB / UIB row.
      block_name: the builder's layer name (e.g. "stage3_block0").
      h: input height.
      w: input width.
      cin: input channels.
    """
    b, n = block_spec, block_name
    out = []
    if isinstance(b, specs.Conv2D):
        op, h, w, c = _conv(n, f"{n}/conv", h, w, cin, b.filters, b.kernel, b.stride)
        return (op,), h, w, c
    if isinstance(b, specs.FusedIB):
        mid = make_divisible(cin * b.expand)
        op, h, w, c = _conv(n, f"{n}/expand/conv", h, w, cin, mid, b.kernel, b.stride)
        out.append(op)
        op, h, w, c = _conv(n, f"{n}/project/conv", h, w, c, b.filters, 1, 1)
        out.append(op)
        return tuple(out), h, w, c
    if isinstance(b, specs.UIB):
        c = cin
        if b.start_dw:
            stride = 1 if b.middle_dw else b.stride
            op, h, w, c = _conv(n, f"{n}/dw_start/conv", h, w, c, c, b.start_dw, stride, True)
            out.append(op)
        mid = make_divisible(cin * b.expand)
        op, h, w, c = _conv(n, f"{n}/pw_exp/conv", h, w, c, mid, 1, 1)
        out.append(op)
        if b.middle_dw:
            op, h, w, c = _conv(n, f"{n}/dw_mid/conv", h, w, c, c, b.middle_dw, b.stride, True)
            out.append(op)
        op, h, w, c = _conv(n, f"{n}/pw_proj/conv", h, w, c, b.filters, 1, 1)
        out.append(op)
        return tuple(out), h, w, c
    raise TypeError(f"spec costs cover conv architectures only, got {b!r}")


def architecture_ops(arch, input_size, classes=1000) -> List[Op]:
    """Every op of the classifier `arch` builds at `input_size`, in network order.

    Args:
      arch: a conv `specs.Architecture` (width_multiplier 1).
      input_size: (H, W) or an int.
      classes: classifier outputs.
    """
    h, w = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    ops, h, w, c = block_ops(arch.stem, "stem", h, w, 3)
    ops = list(ops)
    for s, stage in enumerate(arch.stages, start=1):
        for j, row in enumerate(stage):
            block, h, w, c = block_ops(row, f"stage{s}_block{j}", h, w, c)
            ops.extend(block)
    block, h, w, c = block_ops(arch.head_conv, "head_conv", h, w, c)
    ops.extend(block)
    ops.append(("global_pool", "global_pool", "pool", (1, h, w, c), (1, 1, 1, c), 0, 0))
    f = arch.num_features
    ops.append(("head", "head/conv", "dense", (1, 1, 1, c), (1, 1, 1, f), c * f, c * f))
    ops.append(
        (
            "classifier",
            "classifier",
            "dense",
            (1, f),
            (1, classes),
            f * classes,
            f * classes + classes,
        )
    )
    return ops


def total_macs(arch, input_size, classes=1000) -> int:
    """MACs of the classifier (conv, depthwise, dense; as mobilenetv4.costs counts).

    Args:
      arch: a conv `specs.Architecture`.
      input_size: (H, W) or an int.
      classes: classifier outputs.
    """
    return sum(op[5] for op in architecture_ops(arch, input_size, classes))


def count_params(arch, classes=1000, trainable=True) -> int:
    """Parameters of the built classifier: kernels, BN (gamma, beta; + moving mean and variance
    when not `trainable`) and the classifier bias.

    Args:
      arch: a conv `specs.Architecture`.
      classes: classifier outputs.
      trainable: as `mobilenetv4.costs.count_params`.
    """
    per_bn = 2 if trainable else 4
    total = 0
    for op in architecture_ops(arch, 32, classes):
        total += op[6]
        if op[0] != "classifier" and op[2] != "pool":
            total += per_bn * op[4][-1]  # every conv of the builder is a ConvBN
    return total


def roofline_ops(arch, input_size, classes=1000, precision="int8"):
    """`roofline.ops.RooflineOp`s of the classifier, as `roofline.analysis.roofline_ops` gives
    for the built model.

    Args:
      arch: a conv `specs.Architecture`.
      input_size: (H, W) or an int.
      classes: classifier outputs.
      precision: int8, fp16 or fp32.
    """
    return [
        roofline_ops_lib.make_op(block, name, kind, macs, params, [ishape], [oshape], precision)
        for block, name, kind, ishape, oshape, macs, params in architecture_ops(
            arch, input_size, classes
        )
    ]


def block_groups(arch):
    """(layer name, row, stage index) for every row, stem and head_conv included, in order.

    Args:
      arch: a `specs.Architecture`.
    """
    rows = [("stem", arch.stem, 0)]
    for s, stage in enumerate(arch.stages, start=1):
        rows.extend((f"stage{s}_block{j}", row, s) for j, row in enumerate(stage))
    rows.append(("head_conv", arch.head_conv, 5))
    return rows
