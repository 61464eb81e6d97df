"""The NAS search space of MobileNetV4 (paper Sec. 6.1, Appendix A) as data, in specs' vocabulary.

Appendix A's construction: a fixed stem (Conv2D 3x3 s2); a fused stage (FusedIB, stride 2) whose
width and expansion are searched; UIB stages whose depth and block instantiations are searched;
the MobileNetV3 head (1x1 conv 960, pool, 1x1 1280) fixed. Every searchable quantity is a named
categorical `Decision`; an assignment of one value per decision (`decode`) is a
`specs.Architecture` the builder accepts.

Decision names (s = stage 1..4, b = block index in the stage, from 0):
  stage{s}/width            width multiplier of the stage over `base_filters[s-1]`
  stage{s}/expand           expansion of a fused stage (first conv width / input width)
  stage{s}/block{b}/present TuNAS's "zero" choice: False drops the block (an identity path);
                            block 0 of a stage (it carries the stride) is always present
  stage{s}/block{b}/start_dw   UIB start DW kernel, 0 = absent
  stage{s}/block{b}/middle_dw  UIB middle DW kernel, 0 = absent (block 0: never absent when the
                            start DW is, since an FFN cannot carry the stride: see `decode`)
  stage{s}/block{b}/expand  UIB expansion

The three searches of the paper (`SearchSpace.stage`):
  "coarse"    widths, fused expansions and block presence searched; every UIB an IB with
              expansion 4 and a 3x3 DW (start_dw=0, middle_dw=3, expand=4 fixed).
  "fine"      widths and depth fixed from the coarse result (`SearchSpace.fixed`); each present
              block's start DW and middle DW searched in {absent, 3x3, 5x5}; expansion 4.
  "one_stage" the union, searched in one pass (paper Table 4's baseline).

Extensions beyond Appendix A's text, needed so that Tables 11, 12 and 14 are points of the space
(the paper searches "per-size search spaces"; these are the per-size knobs):
  - `expansions`: the tables use UIB expansions 2, 3 and 6 besides 4 (Conv-S, Conv-M), so the
    expressive spaces (`EXPRESSIVE`) allow {2, 3, 4, 6}; the paper's searches keep (4,), under
    which the decision is fixed, not searched.
  - `fused_block="conv_pair"` with `fused_stages=2`: Conv-S's first two stages are plain
    conv-BN-act pairs (specs.CONV_SMALL), not FusedIB.
  - `stem_filters`: Conv-L's stem has 24 filters, Conv-S/M's 32 (a per-space constant).
"""

import dataclasses
import difflib
import json
from typing import Dict, Mapping, Optional, Sequence, Tuple

from mobilenetv4 import specs
from mobilenetv4.cli import UserError

STAGES = ("coarse", "fine", "one_stage")
DW_KERNELS = (0, 3, 5)
STRIDE_DW_KERNELS = (3, 5)  # a block-0 middle DW when there is no start DW
# One width vocabulary for every size: the base widths of the four stages and the multipliers.
BASE_FILTERS = (32, 64, 128, 256)
WIDTH_MULTIPLIERS = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)


def make_divisible(value, divisor=8):
    """The builder's channel rounding (mobilenetv4.layers.common.make_divisible), without TF."""
    new_value = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


@dataclasses.dataclass(frozen=True)
class Decision:
    """One named categorical choice of the space."""

    name: str
    choices: Tuple

    def index(self, value):
        """Index of `value` among the choices (UserError naming the decision otherwise)."""
        for i, choice in enumerate(self.choices):
            if choice == value and isinstance(choice, bool) == isinstance(value, bool):
                return i
        raise UserError(
            f"decision {self.name}: value {value!r} is not a choice; choose one of "
            f"{', '.join(map(repr, self.choices))}"
        )


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """A per-size search space (Appendix A) in one of the three search stages.

    Attributes:
      name: the space's name (e.g. "conv_medium", "quickstart").
      stage: "coarse", "fine" or "one_stage".
      default_size: input resolution the costs are computed at.
      stem_filters: filters of the fixed 3x3 s2 stem.
      fused_stages: how many leading stages are fused (1, or Conv-S's 2).
      fused_block: "FusedIB" or "conv_pair" (Conv-S's conv-BN-act pairs).
      max_blocks: most UIB blocks in each UIB stage (one entry per stage after the fused ones).
      base_filters: base widths of the four stages.
      width_multipliers: the width choices of every stage.
      fused_expansions: expansion choices of a fused stage.
      expansions: UIB expansion choices; (4,) in the paper's searches.
      dw_kernels: UIB DW choices (0 = absent).
      fixed: decision values held fixed (fine stage: the coarse result); names must exist.
      dropout: the classifier dropout of the architectures it decodes.
    """

    name: str
    stage: str = "one_stage"
    default_size: int = 224
    stem_filters: int = 32
    fused_stages: int = 1
    fused_block: str = "FusedIB"
    max_blocks: Tuple[int, ...] = (3, 6, 6)
    base_filters: Tuple[int, ...] = BASE_FILTERS
    width_multipliers: Tuple[float, ...] = WIDTH_MULTIPLIERS
    fused_expansions: Tuple[float, ...] = (2, 4)
    expansions: Tuple[float, ...] = (4,)
    dw_kernels: Tuple[int, ...] = DW_KERNELS
    fixed: Tuple[Tuple[str, object], ...] = ()
    dropout: float = 0.2

    def __post_init__(self):
        if self.stage not in STAGES:
            raise UserError(f"unknown search stage {self.stage!r}; choose one of {STAGES}")
        if self.fused_stages + len(self.max_blocks) != 4:
            raise UserError(
                f"space {self.name}: {self.fused_stages} fused stage(s) + "
                f"{len(self.max_blocks)} UIB stages != 4 stages"
            )
        if self.fused_block not in ("FusedIB", "conv_pair"):
            raise UserError(f"space {self.name}: fused_block must be FusedIB or conv_pair")
        if any(n < 1 for n in self.max_blocks):
            raise UserError(f"space {self.name}: every UIB stage needs max_blocks >= 1")

    # --- the full list of decisions (the one-stage union), then the stage's selection -----------

    def all_decisions(self) -> Tuple[Decision, ...]:
        """Every decision of the union space, in network order."""
        out = []
        for s in range(1, self.fused_stages + 1):
            out.append(Decision(f"stage{s}/width", tuple(self.width_multipliers)))
            out.append(Decision(f"stage{s}/expand", tuple(self.fused_expansions)))
        for i, n in enumerate(self.max_blocks):
            s = self.fused_stages + 1 + i
            out.append(Decision(f"stage{s}/width", tuple(self.width_multipliers)))
            for b in range(n):
                p = f"stage{s}/block{b}"
                if b > 0:
                    out.append(Decision(f"{p}/present", (True, False)))
                out.append(Decision(f"{p}/start_dw", tuple(self.dw_kernels)))
                middle = tuple(self.dw_kernels)
                if b == 0:  # the stride needs a DW; an absent start DW forces a middle DW
                    middle = tuple(k for k in middle if k) or STRIDE_DW_KERNELS
                out.append(Decision(f"{p}/middle_dw", middle))
                out.append(Decision(f"{p}/expand", tuple(self.expansions)))
        return tuple(out)

    def stage_defaults(self) -> Dict[str, object]:
        """Values the stage holds fixed before `fixed`: the coarse stage's IB e4 3x3 blocks."""
        if self.stage != "coarse":
            return {}
        out = {}
        for d in self.all_decisions():
            leaf = d.name.rsplit("/", 1)[-1]
            if "/block" in d.name and leaf in ("start_dw", "middle_dw", "expand"):
                want = {"start_dw": 0, "middle_dw": 3, "expand": 4}[leaf]
                out[d.name] = want if want in d.choices else d.choices[0]
        return out

    @property
    def decisions(self) -> Tuple[Decision, ...]:
        """The searched decisions: the stage's, minus fixed ones and those with one choice."""
        held = {**self.stage_defaults(), **dict(self.fixed)}
        searched = []
        for d in self.all_decisions():
            if d.name in held or len(d.choices) < 2:
                continue
            block = d.name.rsplit("/", 1)[0]
            if held.get(f"{block}/present") is False:
                continue  # a block the coarse result dropped has nothing to search
            leaf = d.name.rsplit("/", 1)[-1]
            if self.stage == "fine" and leaf in ("width", "present"):
                continue  # from the coarse result (held); a missing one keeps its default
            if self.stage == "fine" and d.name.endswith("/expand") and "/block" not in d.name:
                continue
            searched.append(d)
        return tuple(searched)

    def decision(self, name) -> Decision:
        """The decision called `name` (UserError with the closest name otherwise)."""
        by_name = {d.name: d for d in self.all_decisions()}
        if name not in by_name:
            close = difflib.get_close_matches(str(name), by_name, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UserError(
                f"search space {self.name} has no decision {name!r}{hint}; decisions are "
                f"stage{{s}}/width, stage{{s}}/expand, stage{{s}}/block{{b}}/"
                f"present|start_dw|middle_dw|expand"
            )
        return by_name[name]

    def with_fixed(self, values: Mapping[str, object], stage: Optional[str] = None):
        """This space with `values` held fixed (checked: every name and value must exist)."""
        for name, value in values.items():
            self.decision(name).index(value)
        merged = {**dict(self.fixed), **dict(values)}
        return dataclasses.replace(
            self, stage=stage or self.stage, fixed=tuple(sorted(merged.items()))
        )

    def fine_after(self, coarse_values: Mapping[str, object]):
        """The fine-stage space given the coarse search's result (its widths and depth)."""
        keep = {
            k: v
            for k, v in coarse_values.items()
            if k.endswith(("/width", "/present")) or ("/block" not in k and k.endswith("/expand"))
        }
        return dataclasses.replace(self, stage="fine").with_fixed(keep)

    # --- values <-> architectures ----------------------------------------------------------

    def values(self, searched: Optional[Mapping[str, object]] = None) -> Dict[str, object]:
        """A full assignment: defaults (first choice), then stage defaults, fixed, `searched`."""
        out = {d.name: _default_choice(d) for d in self.all_decisions()}
        out.update(self.stage_defaults())
        out.update(dict(self.fixed))
        for name, value in (searched or {}).items():
            self.decision(name).index(value)
            out[name] = value
        return out

    def from_indices(self, indices: Sequence[int]) -> Dict[str, object]:
        """Values of the searched decisions from one choice index per decision (in order)."""
        decisions = self.decisions
        if len(indices) != len(decisions):
            raise ValueError(f"expected {len(decisions)} indices, got {len(indices)}")
        return {d.name: d.choices[int(i)] for d, i in zip(decisions, indices)}

    def indices(self, values: Mapping[str, object]) -> Tuple[int, ...]:
        """Choice index of every searched decision under the full assignment `values`."""
        full = self.values(values)
        return tuple(d.index(full[d.name]) for d in self.decisions)

    def decode(self, values: Mapping[str, object], name: Optional[str] = None):
        """The `specs.Architecture` of a (partial) assignment; absent blocks are dropped.

        Args:
          values: decision name -> value; unassigned decisions take `values()`'s defaults.
          name: the architecture's name (default "<space>_searched").
        """
        v = self.values(values)
        stages = []
        in_filters = self.stem_filters
        for s in range(1, self.fused_stages + 1):
            filters = make_divisible(self.base_filters[s - 1] * v[f"stage{s}/width"])
            expand = v[f"stage{s}/expand"]
            if self.fused_block == "FusedIB":
                stages.append((specs.FusedIB(3, expand, filters, 2),))
            else:
                mid = make_divisible(in_filters * expand)
                stages.append((specs.Conv2D(3, mid, 2), specs.Conv2D(1, filters)))
            in_filters = filters
        for i, n in enumerate(self.max_blocks):
            s = self.fused_stages + 1 + i
            filters = make_divisible(self.base_filters[s - 1] * v[f"stage{s}/width"])
            blocks = []
            for b in range(n):
                p = f"stage{s}/block{b}"
                if b > 0 and not v[f"{p}/present"]:
                    continue
                blocks.append(
                    specs.UIB(
                        v[f"{p}/start_dw"],
                        v[f"{p}/middle_dw"],
                        v[f"{p}/expand"],
                        filters,
                        2 if b == 0 else 1,
                    )
                )
            stages.append(tuple(blocks))
        return specs.Architecture(
            name=name or f"{self.name}_searched",
            paper_table=f"searched ({self.name}, {self.stage})",
            default_size=self.default_size,
            stem=specs.Conv2D(3, self.stem_filters, 2),
            stages=tuple(stages),
            dropout=self.dropout,
        ).validate()

    def encode(self, arch) -> Dict[str, object]:
        """The full assignment whose `decode` is `arch` (UserError naming what does not fit).

        Args:
          arch: a `specs.Architecture` with this space's stem, fused stages and <= max_blocks.
        """

        def fail(msg):
            raise UserError(f"{arch.name} is not in search space {self.name}: {msg}")

        if arch.stem != specs.Conv2D(3, self.stem_filters, 2):
            fail(f"stem {arch.stem} != Conv2D(3, {self.stem_filters}, 2)")
        out = {}
        in_filters = self.stem_filters
        for s in range(1, self.fused_stages + 1):
            stage = arch.stages[s - 1]
            if self.fused_block == "FusedIB":
                (block,) = stage
                filters, expand = block.filters, block.expand
            else:
                first, second = stage
                filters, expand = second.filters, first.filters / in_filters
                expand = int(expand) if float(expand).is_integer() else expand
            out[f"stage{s}/width"] = self._multiplier(s, filters, fail)
            out[f"stage{s}/expand"] = expand
            in_filters = filters
        for i, n in enumerate(self.max_blocks):
            s = self.fused_stages + 1 + i
            stage = arch.stages[s - 1]
            if len(stage) > n:
                fail(f"stage {s} has {len(stage)} blocks, the space at most {n}")
            out[f"stage{s}/width"] = self._multiplier(s, stage[0].filters, fail)
            for b in range(n):
                p = f"stage{s}/block{b}"
                if b > 0:
                    out[f"{p}/present"] = b < len(stage)
                if b < len(stage):
                    block = stage[b]
                    if not isinstance(block, specs.UIB):
                        fail(f"stage {s} block {b} is {block.kind}, not a UIB")
                    out[f"{p}/start_dw"] = block.start_dw
                    out[f"{p}/middle_dw"] = block.middle_dw
                    out[f"{p}/expand"] = block.expand
        try:
            self.values(out)
        except UserError as e:
            fail(str(e))
        return self.values(out)

    def _multiplier(self, s, filters, fail):
        for m in self.width_multipliers:
            if make_divisible(self.base_filters[s - 1] * m) == filters:
                return m
        fail(f"stage {s} width {filters} is no multiplier of {self.base_filters[s - 1]}")

    def describe(self) -> str:
        """One line per searched decision: name and choices."""
        return "\n".join(f"{d.name}: {list(d.choices)}" for d in self.decisions)


def _default_choice(d: Decision):
    """Unassigned decisions: width 1, present, and the coarse stage's IB e4 3x3 block."""
    leaf = d.name.rsplit("/", 1)[-1]
    want = {"width": 1.0, "present": True, "start_dw": 0, "middle_dw": 3, "expand": 4}[leaf]
    return want if want in d.choices else d.choices[0]


# --- per-size spaces ---------------------------------------------------------------------------

# The paper's searches (Appendix A targets; gin picks the stage). Expansion 4 throughout.
CONV_SMALL = SearchSpace(
    "conv_small",
    default_size=224,
    fused_stages=2,
    fused_block="conv_pair",
    fused_expansions=(1, 2, 3, 4),
    max_blocks=(8, 8),
    dropout=0.3,
)
CONV_MEDIUM = SearchSpace("conv_medium", default_size=256, max_blocks=(4, 10, 12))
CONV_LARGE = SearchSpace("conv_large", default_size=384, stem_filters=24, max_blocks=(4, 12, 14))
# A small space for the quickstart (digits at 32 px) and the tests.
QUICKSTART = SearchSpace(
    "quickstart",
    default_size=32,
    stem_filters=16,
    base_filters=(16, 24, 32, 48),
    width_multipliers=(0.5, 1.0, 1.5),
    max_blocks=(2, 2, 2),
    dropout=0.0,
)
SPACES = {space.name: space for space in (CONV_SMALL, CONV_MEDIUM, CONV_LARGE, QUICKSTART)}
UIB_EXPANSIONS = (2, 3, 4, 6)  # what Tables 11, 12, 14 use


def get(name, stage="one_stage", expressive=False):
    """The registered space `name` in search `stage`.

    Args:
      name: one of SPACES (conv_small, conv_medium, conv_large, quickstart).
      stage: "coarse", "fine" or "one_stage".
      expressive: allow UIB expansions (2, 3, 4, 6) so the paper's tables are points of the space.
    """
    if name not in SPACES:
        raise UserError(f"unknown search space {name!r}; choose one of {', '.join(SPACES)}")
    space = dataclasses.replace(SPACES[name], stage=stage)
    if expressive:
        space = dataclasses.replace(space, expansions=UIB_EXPANSIONS)
    return space


# --- architectures as JSON (build records, analyze output) -------------------------------------

_BLOCK_TYPES = {"Conv2D": specs.Conv2D, "FusedIB": specs.FusedIB, "UIB": specs.UIB}


def architecture_to_dict(arch) -> dict:
    """A JSON-ready dict of a conv `specs.Architecture` (what a build record's `architecture` holds)."""

    def block(b):
        return {"type": type(b).__name__, **dataclasses.asdict(b)}

    return {
        "name": arch.name,
        "paper_table": arch.paper_table,
        "default_size": arch.default_size,
        "stem": block(arch.stem),
        "stages": [[block(b) for b in stage] for stage in arch.stages],
        "head_conv": block(arch.head_conv),
        "num_features": arch.num_features,
        "activation": arch.activation,
        "dropout": arch.dropout,
    }


def architecture_from_dict(data) -> "specs.Architecture":
    """The `specs.Architecture` of `architecture_to_dict`'s output (UserError if malformed)."""
    if isinstance(data, str):
        data = json.loads(data)

    def block(d):
        d = dict(d)
        kind = d.pop("type", None)
        if kind not in _BLOCK_TYPES:
            raise UserError(f"architecture spec: unknown block type {kind!r}")
        return _BLOCK_TYPES[kind](**d)

    try:
        return specs.Architecture(
            name=data["name"],
            paper_table=data.get("paper_table", "searched"),
            default_size=int(data["default_size"]),
            stem=block(data["stem"]),
            stages=tuple(tuple(block(b) for b in stage) for stage in data["stages"]),
            head_conv=block(data.get("head_conv", {"type": "Conv2D", "kernel": 1, "filters": 960})),
            num_features=int(data.get("num_features", 1280)),
            activation=data.get("activation", "relu"),
            dropout=float(data.get("dropout", 0.2)),
        ).validate()
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"malformed architecture spec: {e}") from None
