"""Pluggable cost models for the search's reward, and TuNAS's absolute reward.

A cost model maps a `specs.Architecture` to one number, fast (it runs every RL step): all three
work from the spec, never from a built Keras model.
  "macs"      MACs of the classifier (`mobilenetv4.spec_costs`, equal to `mobilenetv4.costs`).
  "roofline"  the paper's Eq. 1 at a ridge point (MACs/byte) and peak MACs/s
              (`mobilenetv4.roofline.ops.model_time` over `spec_costs.roofline_ops`).
  "latency"   a measured per-block latency table summed over the architecture
              (`experiments.nas.latency_table`).
Dual targets (Appendix A: "285M MACs and 0.2 ms") are a list of `Target`s; the reward adds one
penalty term per target.
"""

import dataclasses
import math
from typing import Callable, Sequence

import gin

from mobilenetv4 import spec_costs
from mobilenetv4.cli import UserError
from mobilenetv4.roofline import ops as roofline_ops


@dataclasses.dataclass(frozen=True)
class MacsCost:
    """MACs of the classifier at `input_size` with `classes` outputs."""

    input_size: int = 224
    classes: int = 1000
    name: str = "macs"
    unit: str = "MACs"

    def __call__(self, arch) -> float:
        return float(spec_costs.total_macs(arch, self.input_size, self.classes))


@dataclasses.dataclass(frozen=True)
class RooflineCost:
    """Eq. 1: sum over ops of max(MACs / PeakMACs, Bytes * RP / PeakMACs).

    With `peak_macs` = 1 the unit is MAC-equivalents (at RP 0 it is the MAC count); pass the
    device's MACs per second for seconds (and scale the target alike).
    """

    ridge_point: float = 0.0
    peak_macs: float = 1.0
    precision: str = "int8"
    input_size: int = 224
    classes: int = 1000
    name: str = "roofline"
    unit: str = "MAC-equivalents"

    def __post_init__(self):
        roofline_ops.check_ridge_point(self.ridge_point)
        roofline_ops.check_peak(self.peak_macs, "peak_macs")
        roofline_ops.bytes_per_value(self.precision)

    def __call__(self, arch) -> float:
        ops = spec_costs.roofline_ops(arch, self.input_size, self.classes, self.precision)
        return roofline_ops.model_time(ops, self.ridge_point, self.peak_macs)


COST_MODELS = ("macs", "roofline", "latency")


@gin.configurable
def make_cost_model(
    name="macs",
    input_size=224,
    classes=1000,
    ridge_point=0.0,
    peak_macs=1.0,
    precision="int8",
    latency_table=None,
    device=None,
):
    """The cost model called `name` (UserError for an unknown one).

    Args:
      name: "macs", "roofline" or "latency".
      input_size: resolution the cost is computed at.
      classes: classifier outputs.
      ridge_point: roofline ridge point, MACs/byte (paper Table 16: 0 for CPUs, ~400 for
        EdgeTPU/DSP-like).
      peak_macs: roofline peak MACs/s (1 gives MAC-equivalents).
      precision: roofline bytes per value: int8, fp16 or fp32.
      latency_table: path of a latency table JSON ("latency").
      device: the device the latency table must have been measured on (None: any).
    """
    if name == "macs":
        return MacsCost(input_size, classes)
    if name == "roofline":
        return RooflineCost(ridge_point, peak_macs, precision, input_size, classes)
    if name == "latency":
        from experiments.nas import latency_table as table_lib  # pylint: disable=g-import-not-at-top

        if not latency_table:
            raise UserError("cost model 'latency' needs make_cost_model.latency_table = 'FILE'")
        return table_lib.LatencyTableCost(
            table_lib.load(latency_table, input_size=input_size, device=device)
        )
    raise UserError(f"unknown cost model {name!r}; choose one of {', '.join(COST_MODELS)}")


@dataclasses.dataclass(frozen=True)
class Target:
    """One cost target of the reward: `cost_model(arch)` should equal `value`."""

    cost_model: Callable
    value: float

    def __post_init__(self):
        if (
            not (isinstance(self.value, (int, float)) and math.isfinite(self.value))
            or self.value <= 0
        ):
            raise UserError(f"cost target must be a finite number > 0, got {self.value!r}")


def cost_penalty(costs: Sequence[float], targets: Sequence[Target], beta: float = -0.1) -> float:
    """TuNAS's absolute reward term: beta * sum_i |cost_i / target_i - 1|.

    Args:
      costs: one cost per target.
      targets: the targets.
      beta: the penalty weight (< 0).
    """
    return beta * sum(abs(c / t.value - 1.0) for c, t in zip(costs, targets))


def absolute_reward(quality, costs, targets, beta=-0.1):
    """TuNAS reward: quality + beta * sum_i |cost_i / target_i - 1| (beta = -0.1 default).

    Args:
      quality: the architecture's quality (validation accuracy of the shared weights).
      costs: one cost per target.
      targets: the targets.
      beta: the penalty weight.
    """
    return quality + cost_penalty(costs, targets, beta)


def _extreme(space, cost_model, cheapest):
    """The (near-)cheapest or dearest architecture: coordinate-wise best choice, two passes
    (exact when the cost grows monotonically with each choice, as MACs and Eq. 1 do)."""
    values = space.values()
    sign = 1.0 if cheapest else -1.0
    for _ in range(2):
        for d in space.decisions:
            best = None
            for choice in d.choices:
                trial = {**values, d.name: choice}
                cost = sign * cost_model(space.decode(trial))
                if best is None or cost < best[0]:
                    best = (cost, choice)
            values[d.name] = best[1]
    return values, cost_model(space.decode(values))


def cost_range(space, cost_model):
    """(cheapest, dearest) cost over the space under `cost_model`.

    Args:
      space: a `mobilenetv4.search_space.SearchSpace`.
      cost_model: a cost model.
    """
    return _extreme(space, cost_model, True)[1], _extreme(space, cost_model, False)[1]


def check_reachable(space, targets: Sequence[Target], slack=0.0):
    """UserError when a target lies outside the space's cost range, naming the side and by how
    much; returns the ranges.

    Args:
      space: the search space.
      targets: the reward's targets.
      slack: relative tolerance (0.05 accepts a target 5% outside the range).
    """
    ranges = []
    for t in targets:
        low, high = cost_range(space, t.cost_model)
        name = getattr(t.cost_model, "name", "cost")
        if t.value < low * (1 - slack):
            raise UserError(
                f"{name} target {t.value:.4g} is below the cheapest architecture of space "
                f"{space.name} ({space.stage}) at {low:.4g} ({(1 - t.value / low) * 100:.1f}% "
                "under); raise the target or use a smaller space"
            )
        if t.value > high * (1 + slack):
            raise UserError(
                f"{name} target {t.value:.4g} is above the dearest architecture of space "
                f"{space.name} ({space.stage}) at {high:.4g} ({(t.value / high - 1) * 100:.1f}% "
                "over); lower the target or use a larger space"
            )
        ranges.append((low, high))
    return ranges


def deviation(costs, targets) -> float:
    """max_i |cost_i / target_i - 1|: how far an architecture is from its tightest target."""
    return max(abs(c / t.value - 1.0) for c, t in zip(costs, targets))


def select_architecture(
    space, log_probs, targets, tolerance=None, num_samples=4096, seed=0, exhaustive_limit=20000
):
    """A stage's result: the most likely architecture of the controller's policy whose cost is
    within `tolerance` of every target (TuNAS's per-decision argmax when that one is).

    The policy is factorised, log pi(a) = sum_i log p_i(a_i); its argmax is the most likely
    architecture overall, but nothing ties the argmax's cost to the target: the absolute reward
    shapes the whole distribution (its expected cost), and the argmax of a not fully converged
    policy can sit well off the target (docs/nas.md). This returns argmax_{a : max_i
    |cost_i(a) / target_i - 1| <= tolerance} log pi(a), the maximum-probability architecture
    subject to the constraint the reward encodes. Candidates: every architecture of the space when
    it has at most `exhaustive_limit` (exact), otherwise the argmax, every architecture one or two
    decisions away from it, and `num_samples` draws from the policy (seeded; the controller's own
    generator is not touched). With no candidate inside the band, the one closest to the targets
    (ties: more likely) is returned and `feasible` is False.

    Args:
      space: the stage's search space.
      log_probs: per decision, the log choice probabilities (`Controller.log_probabilities`).
      targets: the reward's `Target`s.
      tolerance: the band (0.03 = +-3%); None or 0 returns the argmax.
      num_samples: policy samples among the candidates (non-exhaustive case).
      seed: seed of those samples.
      exhaustive_limit: largest space enumerated exactly.

    Returns:
      {"indices", "log_prob", "deviation", "feasible", "argmax_indices", "argmax_ratios" (cost /
       target per target), "expected_ratios" (the policy's mean cost / target, over 1,000 of
       its samples), "argmax_log_prob", "argmax_deviation", "tolerance", "candidates",
       "method"}.
    """
    import itertools  # pylint: disable=g-import-not-at-top

    import numpy as np  # pylint: disable=g-import-not-at-top

    log_probs = [np.asarray(lp, np.float64) for lp in log_probs]
    sizes = [len(lp) for lp in log_probs]
    argmax = tuple(int(np.argmax(lp)) for lp in log_probs)

    def score(idx):
        arch = space.decode(space.from_indices(idx))
        dev = deviation([t.cost_model(arch) for t in targets], targets)
        return dev, float(sum(lp[i] for lp, i in zip(log_probs, idx)))

    arg_dev, arg_lp = score(argmax)
    arg_arch = space.decode(space.from_indices(argmax))
    rng = np.random.default_rng(seed)
    probs = [np.exp(lp) / np.exp(lp).sum() for lp in log_probs]
    draws = [rng.choice(len(p), size=num_samples, p=p) for p in probs]
    samples = [tuple(int(c) for c in row) for row in zip(*draws)] if draws else [()]
    expected = np.mean(
        [
            [t.cost_model(a) / t.value for t in targets]
            for a in (space.decode(space.from_indices(i)) for i in samples[:1000])
        ],
        axis=0,
    )
    out = {
        "argmax_indices": list(argmax),
        "argmax_ratios": [t.cost_model(arg_arch) / t.value for t in targets],
        "expected_ratios": [float(x) for x in expected],
        "argmax_log_prob": arg_lp,
        "argmax_deviation": arg_dev,
        "tolerance": tolerance,
    }
    if not tolerance or arg_dev <= tolerance:
        return {
            **out,
            "indices": list(argmax),
            "log_prob": arg_lp,
            "deviation": arg_dev,
            "feasible": bool(not tolerance or arg_dev <= tolerance),
            "candidates": 1,
            "method": "argmax",
        }
    total = int(np.prod(sizes, dtype=np.float64)) if sizes else 1
    if total <= exhaustive_limit:
        candidates = set(itertools.product(*[range(n) for n in sizes]))
        method = "exhaustive"
    else:
        candidates = {argmax}
        n = len(sizes)
        for i in range(n):
            for a in range(sizes[i]):
                one = list(argmax)
                one[i] = a
                candidates.add(tuple(one))
                for j in range(i + 1, n):
                    for b in range(sizes[j]):
                        two = list(one)
                        two[j] = b
                        candidates.add(tuple(two))
        candidates.update(samples)
        method = "neighbours+samples"
    best = None  # (infeasible?, deviation if infeasible else 0, -log_prob)
    for idx in candidates:
        dev, lp = score(idx)
        key = (dev > tolerance, dev if dev > tolerance else 0.0, -lp)
        if best is None or key < best[0]:
            best = (key, idx, dev, lp)
    _, idx, dev, lp = best
    return {
        **out,
        "indices": list(idx),
        "log_prob": lp,
        "deviation": dev,
        "feasible": bool(dev <= tolerance),
        "candidates": len(candidates),
        "method": method,
    }
