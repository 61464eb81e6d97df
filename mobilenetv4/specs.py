"""The MobileNetV4 architectures as data, in the paper's vocabulary (Tables 11-15).

Each row is one block. Expansion is a ratio of the block's input width (the paper's tables give
the product, e.g. Conv-S's first ExtraDW expands 64 x 3 = 192). Where the paper's tables and the
public implementations differ, the rows follow timm and Model Garden, which agree with each other
block for block and are what published weights and parameter counts refer to; the differences
are noted beside the rows.

Row constructors:
  Conv2D(k, c, s)            conv-BN-act
  FusedIB(k, e, c, s)        kxk expand conv (BN, act) -> 1x1 project (BN)
  ExtraDW(k1, k2, e, c, s)   UIB with start DW k1 and middle DW k2
  IB(k, e, c, s)             UIB with the middle DW only (MobileNetV2 inverted bottleneck)
  ConvNext(k, e, c, s)       UIB with the start DW only
  FFN(e, c)                  UIB with no DW: two 1x1 convs
  MobileMQA(heads, d, kv_s)  Mobile MQA block; key = value dim d; K/V downsampled by kv_s
"""

import dataclasses
import difflib
from typing import Optional, Tuple, Union


def uib_kind(start_dw_kernel_size, middle_dw_kernel_size):
    """The paper's name for a UIB instantiation, from which of its two optional DWs exist."""
    return {
        (True, True): "ExtraDW",
        (False, True): "IB",
        (True, False): "ConvNext",
        (False, False): "FFN",
    }[(bool(start_dw_kernel_size), bool(middle_dw_kernel_size))]


@dataclasses.dataclass(frozen=True)
class Conv2D:
    kernel: int
    filters: int
    stride: int = 1
    kind = "Conv2D"


@dataclasses.dataclass(frozen=True)
class FusedIB:
    kernel: int
    expand: float
    filters: int
    stride: int = 1
    kind = "FusedIB"


@dataclasses.dataclass(frozen=True)
class UIB:
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


# Table 11. The paper lists the first two stages as "FusedIB"; both implementations build them
# as plain conv-BN-act pairs (3x3 s2, then 1x1) without a residual, and so do we.
CONV_SMALL = Architecture(
    name="conv_small",
    paper_table="Table 11",
    default_size=224,
    dropout=0.3,
    stem=Conv2D(3, 32, 2),
    stages=(
        (Conv2D(3, 32, 2), Conv2D(1, 32)),
        (Conv2D(3, 96, 2), Conv2D(1, 64)),
        (
            ExtraDW(5, 5, 3, 96, 2),
            IB(3, 2, 96),
            IB(3, 2, 96),
            IB(3, 2, 96),
            IB(3, 2, 96),
            ConvNext(3, 4, 96),
        ),
        (
            ExtraDW(3, 3, 6, 128, 2),
            ExtraDW(5, 5, 4, 128),
            IB(5, 4, 128),
            IB(5, 3, 128),
            IB(3, 4, 128),
            IB(3, 4, 128),
        ),
    ),
)

# Table 12. Stage 3 and 4 orders differ slightly from the paper's table (e.g. the FFN sits between
# the two ConvNexts of stage 3, and stage 4 has two trailing FFNs before the last ConvNext).
CONV_MEDIUM = Architecture(
    name="conv_medium",
    paper_table="Table 12",
    default_size=256,
    stem=Conv2D(3, 32, 2),
    stages=(
        (FusedIB(3, 4, 48, 2),),
        (ExtraDW(3, 5, 4, 80, 2), ExtraDW(3, 3, 2, 80)),
        (
            ExtraDW(3, 5, 6, 160, 2),
            ExtraDW(3, 3, 4, 160),
            ExtraDW(3, 3, 4, 160),
            ExtraDW(3, 5, 4, 160),
            ExtraDW(3, 3, 4, 160),
            ConvNext(3, 4, 160),
            FFN(2, 160),
            ConvNext(3, 4, 160),
        ),
        (
            ExtraDW(5, 5, 6, 256, 2),
            ExtraDW(5, 5, 4, 256),
            ExtraDW(3, 5, 4, 256),
            ExtraDW(3, 5, 4, 256),
            FFN(4, 256),
            ConvNext(3, 4, 256),
            ExtraDW(3, 5, 2, 256),
            ExtraDW(5, 5, 4, 256),
            FFN(4, 256),
            FFN(4, 256),
            ConvNext(5, 2, 256),
        ),
    ),
)

# Table 14.
CONV_LARGE = Architecture(
    name="conv_large",
    paper_table="Table 14",
    default_size=384,
    stem=Conv2D(3, 24, 2),
    stages=(
        (FusedIB(3, 4, 48, 2),),
        (ExtraDW(3, 5, 4, 96, 2), ExtraDW(3, 3, 4, 96)),
        (
            ExtraDW(3, 5, 4, 192, 2),
            ExtraDW(3, 3, 4, 192),
            ExtraDW(3, 3, 4, 192),
            ExtraDW(3, 3, 4, 192),
            ExtraDW(3, 5, 4, 192),
            ExtraDW(5, 3, 4, 192),
            ExtraDW(5, 3, 4, 192),
            ExtraDW(5, 3, 4, 192),
            ExtraDW(5, 3, 4, 192),
            ExtraDW(5, 3, 4, 192),
            ConvNext(3, 4, 192),
        ),
        (
            ExtraDW(5, 5, 4, 512, 2),
            ExtraDW(5, 5, 4, 512),
            ExtraDW(5, 5, 4, 512),
            ExtraDW(5, 5, 4, 512),
            ConvNext(5, 4, 512),
            ExtraDW(5, 3, 4, 512),
            ConvNext(5, 4, 512),
            ConvNext(5, 4, 512),
            ExtraDW(5, 3, 4, 512),
            ExtraDW(5, 5, 4, 512),
            ConvNext(5, 4, 512),
            ConvNext(5, 4, 512),
            ConvNext(5, 4, 512),
        ),
    ),
)

# Table 13. Mobile MQA: 4 heads of 64; K/V downsampled by 2 in stage 3 (16x16 at 256px).
# Stage 3 opens ExtraDW, FFN, ExtraDW, ExtraDW before the first attention block (the paper's
# table shows a fourth ExtraDW in place of the FFN).
_MQA_M3 = MobileMQA(4, 64, kv_stride=2)
_MQA_M4 = MobileMQA(4, 64, kv_stride=1)
HYBRID_MEDIUM = Architecture(
    name="hybrid_medium",
    paper_table="Table 13",
    default_size=256,
    layer_scale=1e-5,
    stem=Conv2D(3, 32, 2),
    stages=(
        (FusedIB(3, 4, 48, 2),),
        (ExtraDW(3, 5, 4, 80, 2), ExtraDW(3, 3, 2, 80)),
        (
            ExtraDW(3, 5, 6, 160, 2),
            FFN(2, 160),
            ExtraDW(3, 3, 4, 160),
            ExtraDW(3, 5, 4, 160),
            _MQA_M3,
            ExtraDW(3, 3, 4, 160),
            _MQA_M3,
            ConvNext(3, 4, 160),
            _MQA_M3,
            ExtraDW(3, 3, 4, 160),
            _MQA_M3,
            ConvNext(3, 4, 160),
        ),
        (
            ExtraDW(5, 5, 6, 256, 2),
            ExtraDW(5, 5, 4, 256),
            ExtraDW(3, 5, 4, 256),
            ExtraDW(3, 5, 4, 256),
            FFN(2, 256),
            ExtraDW(3, 5, 2, 256),
            FFN(2, 256),
            FFN(4, 256),
            _MQA_M4,
            ConvNext(3, 4, 256),
            _MQA_M4,
            ExtraDW(5, 5, 4, 256),
            _MQA_M4,
            ConvNext(5, 4, 256),
            _MQA_M4,
            ConvNext(5, 4, 256),
        ),
    ),
)

# Table 15. GELU throughout; Mobile MQA: 8 heads of 48 with K/V stride 2 in stage 3,
# 8 heads of 64 in stage 4.
_MQA_L3 = MobileMQA(8, 48, kv_stride=2)
_MQA_L4 = MobileMQA(8, 64, kv_stride=1)
HYBRID_LARGE = Architecture(
    name="hybrid_large",
    paper_table="Table 15",
    default_size=384,
    layer_scale=1e-5,
    activation="gelu",
    stem=Conv2D(3, 24, 2),
    stages=(
        (FusedIB(3, 4, 48, 2),),
        (ExtraDW(3, 5, 4, 96, 2), ExtraDW(3, 3, 4, 96)),
        (
            ExtraDW(3, 5, 4, 192, 2),
            ExtraDW(3, 3, 4, 192),
            ExtraDW(3, 3, 4, 192),
            ExtraDW(3, 3, 4, 192),
            ExtraDW(3, 5, 4, 192),
            ExtraDW(5, 3, 4, 192),
            ExtraDW(5, 3, 4, 192),
            _MQA_L3,
            ExtraDW(5, 3, 4, 192),
            _MQA_L3,
            ExtraDW(5, 3, 4, 192),
            _MQA_L3,
            ExtraDW(5, 3, 4, 192),
            _MQA_L3,
            ConvNext(3, 4, 192),
        ),
        (
            ExtraDW(5, 5, 4, 512, 2),
            ExtraDW(5, 5, 4, 512),
            ExtraDW(5, 5, 4, 512),
            ExtraDW(5, 5, 4, 512),
            ConvNext(5, 4, 512),
            ExtraDW(5, 3, 4, 512),
            ConvNext(5, 4, 512),
            ConvNext(5, 4, 512),
            ExtraDW(5, 3, 4, 512),
            ExtraDW(5, 5, 4, 512),
            _MQA_L4,
            ConvNext(5, 4, 512),
            _MQA_L4,
            ConvNext(5, 4, 512),
            _MQA_L4,
            ConvNext(5, 4, 512),
            _MQA_L4,
            ConvNext(5, 4, 512),
        ),
    ),
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
