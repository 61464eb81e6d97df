"""The MobileNetV4 architectures as data, in the paper's vocabulary (Tables 11-15).

Each architecture is its stem, its settings and a table of block rows in the columns of the
paper's Tables 11-15, kept in `architectures.md` (one Markdown table per architecture, beside this
file) so that a row can be checked against the paper's by eye:

    block | DW K1 | DW K2 | expanded dim | output dim | stride

("-" where the paper leaves a cell empty). A stride-2 row opens a stage. Expansion is stored as a
ratio of the block's input width (expanded dim / input dim), which is what a width multiplier
scales. Where the paper's tables and the public implementations differ, the rows follow timm and
Model Garden, which agree with each other block for block and are what published weights and
parameter counts refer to; `architectures.md` states each difference above its table.

Blocks (the rows' values):
  Conv2D(k, c, s)            conv-BN-act
  FusedIB(k, e, c, s)        kxk expand conv (BN, act) -> 1x1 project (BN)
  ExtraDW(k1, k2, e, c, s)   UIB with start DW k1 and middle DW k2
  IB(k, e, c, s)             UIB with the middle DW only (MobileNetV2 inverted bottleneck)
  ConvNext(k, e, c, s)       UIB with the start DW only
  FFN(e, c)                  UIB with no DW: two 1x1 convs
  MobileMQA(heads, d, kv_s)  Mobile MQA block; key = value dim d; K/V downsampled by kv_s (the
                             tables' "Mobile-MQA" rows; their heads and dims are per stage)
"""

import dataclasses
import difflib
import os
from typing import Optional, Tuple, Union


def uib_kind(start_dw_kernel_size, middle_dw_kernel_size):
    """The paper's name for a UIB instantiation, from which of its two optional DWs exist."""
    return {
        (True, True): "ExtraDW",
        (False, True): "IB",
        (True, False): "ConvNext",
        (False, False): "FFN",
    }[(bool(start_dw_kernel_size), bool(middle_dw_kernel_size))]


class _Named:
    @property
    def kind(self):
        """The paper's name of the block: its class name."""
        return type(self).__name__


@dataclasses.dataclass(frozen=True)
class Conv2D(_Named):
    """Conv-BN-act: a `kernel` x `kernel` convolution to `filters` channels."""

    kernel: int
    filters: int
    stride: int = 1


@dataclasses.dataclass(frozen=True)
class FusedIB(_Named):
    """A `kernel` x `kernel` expand conv (BN, act) to `expand` x the input channels, then a 1x1
    project (BN) to `filters`."""

    kernel: int
    expand: float
    filters: int
    stride: int = 1


@dataclasses.dataclass(frozen=True)
class UIB:
    """Universal Inverted Bottleneck (paper Fig. 4): optional start DW, 1x1 expand, optional
    middle DW, 1x1 project; `kind` names the instantiation (ExtraDW, IB, ConvNext, FFN)."""

    start_dw: int  # 0 = absent
    middle_dw: int  # 0 = absent
    expand: float
    filters: int
    stride: int = 1

    @property
    def kind(self):
        return uib_kind(self.start_dw, self.middle_dw)


@dataclasses.dataclass(frozen=True)
class MobileMQA:
    """Mobile MQA block (paper section 4): `heads` query heads, one shared key and value head."""

    heads: int
    key_dim: int
    kv_stride: int = 1
    stride: int = 1  # attention never downsamples its queries; kept for uniform validation
    kind = "Mobile-MQA"


Block = Union[Conv2D, FusedIB, UIB, MobileMQA]


def ExtraDW(k1, k2, e, c, s=1):  # pylint: disable=invalid-name
    return UIB(k1, k2, e, c, s)


def IB(k, e, c, s=1):  # pylint: disable=invalid-name
    return UIB(0, k, e, c, s)


def ConvNext(k, e, c, s=1):  # pylint: disable=invalid-name
    return UIB(k, 0, e, c, s)


def FFN(e, c):  # pylint: disable=invalid-name
    return UIB(0, 0, e, c, 1)


@dataclasses.dataclass(frozen=True)
class Architecture:
    """A whole network: stem, four stages (strides 4, 8, 16, 32), head conv and head features."""

    name: str
    paper_table: str
    default_size: int
    stem: Conv2D
    stages: Tuple[Tuple[Block, ...], ...]
    head_conv: Conv2D = Conv2D(1, 960)
    num_features: int = 1280  # the 1x1 conv after pooling; never width-scaled
    activation: str = "relu"
    layer_scale: Optional[float] = None  # hybrids: 1e-5 on every UIB and attention block
    width_multiplier: float = 1.0  # scales block widths and the head conv; the stem stays unscaled
    dropout: float = 0.2  # paper Table 10
    anti_alias: Optional[str] = None  # timm's aa variants: "avg" | "blur" downsampling in blocks

    @property
    def num_blocks(self):
        return sum(len(stage) for stage in self.stages)

    def validate(self):
        """Raises ValueError naming the first row whose stride the network cannot realise."""
        if self.stem.stride != 2:
            raise ValueError(f"{self.name}: the stem must have stride 2, got {self.stem.stride}")
        if len(self.stages) != 4:
            raise ValueError(
                f"{self.name}: expected 4 stages (strides 4/8/16/32), got {len(self.stages)}"
            )
        for s, stage in enumerate(self.stages, start=1):
            if not stage:
                raise ValueError(f"{self.name}: stage {s} is empty")
            for b, block in enumerate(stage):
                where = f"{self.name} stage {s} block {b} ({block.kind})"
                allowed = (2,) if b == 0 else (1,)
                if block.stride not in allowed:
                    raise ValueError(
                        f"{where}: stride {block.stride} is impossible here; each stage halves the "
                        f"resolution once, in its first block, so allowed strides are {allowed}"
                    )
                if isinstance(block, UIB) and block.stride > 1 and block.kind == "FFN":
                    raise ValueError(
                        f"{where}: an FFN has no depthwise conv to carry stride {block.stride}"
                    )
                if isinstance(block, MobileMQA) and b == 0:
                    raise ValueError(
                        f"{where}: attention cannot open a stage (it cannot downsample)"
                    )
                if isinstance(block, MobileMQA) and block.kv_stride not in (1, 2):
                    raise ValueError(f"{where}: kv_stride must be 1 or 2, got {block.kv_stride}")
        return self


def _kernel(cell):
    return 0 if cell == "-" else int(cell.split("x")[0])


def _block(row, channels, attention):
    """The block of one table row whose input has `channels` channels."""
    kind, k1, k2, expanded, filters, stride = row.split()
    k1, k2, filters, stride = _kernel(k1), _kernel(k2), int(filters), int(stride)
    if kind == "Mobile-MQA":
        if attention is None or filters != channels:
            raise ValueError(f"{row!r}: no attention for this stage, or it changes the width")
        return attention
    if kind == "Conv2D":
        return Conv2D(k2, filters, stride)
    ratio = int(expanded) / channels
    ratio = int(ratio) if ratio.is_integer() else ratio
    if kind == "FusedIB":
        return FusedIB(k2, ratio, filters, stride)
    block = UIB(k1, k2, ratio, filters, stride)
    if block.kind != kind:
        raise ValueError(f"{row!r}: these kernels make a {block.kind}")
    return block


def _architecture(name, paper_table, *, stem, rows, attention=None, **settings):
    """An Architecture from its stem and its table `rows` (text in the paper's columns);
    `attention` maps a stage number (3, 4) to the MobileMQA of that stage's Mobile-MQA rows."""
    stages, channels = [], stem.filters
    for row in filter(str.strip, rows.splitlines()):
        if not stages or row.split()[-1] == "2":  # a stride-2 row opens a stage
            stages.append([])
        block = _block(row, channels, (attention or {}).get(len(stages)))
        stages[-1].append(block)
        channels = getattr(block, "filters", channels)
    return Architecture(
        name=name,
        paper_table=paper_table,
        stem=stem,
        stages=tuple(map(tuple, stages)),
        **settings,
    )


def _read_tables(path=os.path.join(os.path.dirname(__file__), "architectures.md")):
    """{name: ("Table N", its rows, one per line, cells separated by spaces)} from the
    `## name (Table N)` sections of architectures.md (each table's header and separator skipped)."""
    tables, name = {}, None
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("## "):
                name, table = line[3:].strip().rstrip(")").split(" (")
                tables[name] = table, []
            elif line.startswith("|") and name and not line.startswith(("| block", "|---")):
                tables[name][1].append(
                    " ".join(c.strip() for c in line.strip().strip("|").split("|"))
                )
    return {name: (table, "\n".join(rows)) for name, (table, rows) in tables.items()}


_TABLES = _read_tables()


# Each paper architecture's settings; its rows, and where they differ from the paper's tables, are
# in architectures.md.
_SETTINGS = {
    "conv_small": dict(default_size=224, dropout=0.3, stem=Conv2D(3, 32, 2)),
    "conv_medium": dict(default_size=256, stem=Conv2D(3, 32, 2)),
    "conv_large": dict(default_size=384, stem=Conv2D(3, 24, 2)),
    # Mobile MQA: 4 heads of 64; K/V downsampled by 2 in stage 3 (16x16 at 256px).
    "hybrid_medium": dict(
        default_size=256,
        stem=Conv2D(3, 32, 2),
        layer_scale=1e-5,
        attention={3: MobileMQA(4, 64, kv_stride=2), 4: MobileMQA(4, 64, kv_stride=1)},
    ),
    # GELU throughout; Mobile MQA: 8 heads of 48 with K/V stride 2 in stage 3, 8 of 64 in stage 4.
    "hybrid_large": dict(
        default_size=384,
        stem=Conv2D(3, 24, 2),
        layer_scale=1e-5,
        activation="gelu",
        attention={3: MobileMQA(8, 48, kv_stride=2), 4: MobileMQA(8, 64, kv_stride=1)},
    ),
}
CONV_SMALL, CONV_MEDIUM, CONV_LARGE, HYBRID_MEDIUM, HYBRID_LARGE = (
    _architecture(name, _TABLES[name][0], rows=_TABLES[name][1], **settings)
    for name, settings in _SETTINGS.items()
)

ARCHITECTURES = {
    arch.name: arch.validate()
    for arch in (
        CONV_SMALL,
        CONV_MEDIUM,
        CONV_LARGE,
        HYBRID_MEDIUM,
        HYBRID_LARGE,
        dataclasses.replace(CONV_SMALL, name="conv_small_050", width_multiplier=0.5),
        dataclasses.replace(
            HYBRID_MEDIUM, name="hybrid_medium_075", width_multiplier=0.75, default_size=224
        ),
        dataclasses.replace(
            HYBRID_LARGE, name="hybrid_large_075", width_multiplier=0.75, default_size=256
        ),
        # timm's anti-aliased variants (not in the paper): strided block convs run at stride 1,
        # then BN + act, then a 2x2 average pool ("avg") or a fixed 3x3 blur pool ("blur").
        dataclasses.replace(
            CONV_MEDIUM, name="conv_blur_medium", anti_alias="blur", default_size=224
        ),
        dataclasses.replace(CONV_LARGE, name="conv_aa_large", anti_alias="avg"),
    )
}


def get(name):
    """The `Architecture` registered as `name`; ValueError (a UserError) listing the valid names."""
    from mobilenetv4.cli import UserError  # pylint: disable=g-import-not-at-top

    if name not in ARCHITECTURES:
        close = difflib.get_close_matches(str(name), ARCHITECTURES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(
            f"unknown model {name!r}{hint}; choose one of {', '.join(sorted(ARCHITECTURES))}"
        )
    return ARCHITECTURES[name]
