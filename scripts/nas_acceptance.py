r"""Issue #14's target-tracking and hardware-awareness acceptance searches, and their tables.

  python scripts/nas_acceptance.py --out /tmp/nas_acceptance            # run, then print
  python scripts/nas_acceptance.py --out /tmp/nas_acceptance --print_only

Protocol (all on the quickstart configuration, gin_configs/nas_quickstart.gin: digits at 32 px,
space `quickstart`, two stages of `--steps` steps, seed 0, one search per row, run one after
the other):
  - Equal-latency targets for the two ridge points: the same fraction `--fraction` of each cost
    model's range over the one-stage space (cheapest to dearest architecture, computed here by
    `cost_models.cost_range`), i.e. the same relative speed on a MAC-bound device (ridge point 0)
    and on a memory-bound one (ridge point `--ridge_point`, paper Table 16's EdgeTPU/DSP ~400).
    In MAC-equivalents (peak 1) the two devices' units differ, so the same absolute number cannot
    be a target on both.
  - Searches: `rp0`  roofline at ridge point 0 (identical to the MAC count: a MAC target),
              `macs_<t>` MAC targets `--mac_targets`,
              `rp<R>` roofline at ridge point R.
    Target tracking uses the MAC searches together with `rp0` (three MAC targets) and `rp<R>`
    (the roofline target); hardware awareness compares `rp0` with `rp<R>`.
  - Figures: each stage's argmax (TuNAS's per-decision argmax) and result (the most likely
    architecture within `search.tolerance` of the target, cost_models.select_architecture) as
    cost / target; the final result's MACs, parameters and cost at both ridge points.
A finished search (MODEL_DIR/architecture.json present) is not rerun.
"""

import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from experiments.nas import cost_models
from mobilenetv4 import search_space, spec_costs

SIZE, CLASSES = 32, 10  # the quickstart data (digits at 32 px, 10 classes)


def _fail(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def _roofline(ridge_point):
    return cost_models.RooflineCost(float(ridge_point), input_size=SIZE, classes=CLASSES)


def plan(args):
    """[(name, targets dict, ridge point)] of the acceptance searches."""
    space = search_space.get("quickstart", "one_stage")
    runs = []
    for rp in (0.0, args.ridge_point):
        low, high = cost_models.cost_range(space, _roofline(rp))
        target = low + args.fraction * (high - low)
        runs.append((f"rp{rp:g}", {"roofline": float(f"{target:.4g}")}, rp))
    for t in args.mac_targets:
        runs.append((f"macs_{t / 1e6:g}M", {"macs": float(t)}, 0.0))
    return runs


def run(args, name, targets, ridge_point):
    model_dir = os.path.join(args.out, name)
    if os.path.exists(os.path.join(model_dir, "architecture.json")):
        print(f"{name}: done earlier ({model_dir})", flush=True)
        return
    cmd = [
        sys.executable,
        "-m",
        "experiments.nas.search",
        "--gin_file=gin_configs/nas_quickstart.gin",
        f"--model_dir={model_dir}",
        f"--gin_param=search.targets = {targets!r}",
        f"--gin_param=make_cost_model.ridge_point = {float(ridge_point)!r}",
        f"--gin_param=search.steps_per_stage = {args.steps}",
    ]
    start = time.time()
    print(f"{name}: {' '.join(cmd[3:])}", flush=True)
    with open(os.path.join(args.out, f"{name}.log"), "w") as log:
        code = subprocess.call(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    print(f"{name}: exit {code} after {(time.time() - start) / 60:.1f} min", flush=True)
    if code:
        _fail(f"search {name} failed (exit {code}); see {args.out}/{name}.log")


def _load(args, name):
    d = os.path.join(args.out, name)
    with open(os.path.join(d, "architecture.json")) as f:
        summary = json.load(f)
    stages = {}
    for s in summary["stages"]:
        with open(os.path.join(d, f"{s}.json")) as f:
            stages[s] = json.load(f)
    return summary, stages


def _describe(arch_dict):
    parts = []
    for stage in arch_dict["stages"]:
        names = []
        for b in stage:
            if b["type"] == "UIB":
                kind = search_space.specs.uib_kind(b["start_dw"], b["middle_dw"])
                names.append(f"{kind}({b['start_dw']},{b['middle_dw']})")
            else:
                names.append(b["type"])
        parts.append(" + ".join(names) + f" {stage[-1]['filters']}")
    return " | ".join(parts)


def tables(args, runs):
    rp = args.ridge_point
    models = {0.0: _roofline(0.0), rp: _roofline(rp)}
    rows = {}
    for name, targets, ridge in runs:
        summary, stages = _load(args, name)
        arch = search_space.architecture_from_dict(summary["architecture"])
        ((key, target),) = targets.items()
        per_stage = []
        for s, st in stages.items():
            sel = st["selection"]
            per_stage.append(
                (
                    s,
                    sel["argmax_ratios"][0],
                    st["costs"][key]["ratio"],
                    sel["method"],
                    sel["log_prob"] - sel["argmax_log_prob"],
                    sel.get("expected_ratios", [float("nan")])[0],
                )
            )
        rows[name] = {
            "target": target,
            "key": key,
            "ridge": ridge,
            "stages": per_stage,
            "macs": spec_costs.total_macs(arch, SIZE, CLASSES),
            "params": spec_costs.count_params(arch, CLASSES),
            "cost": {r: m(arch) for r, m in models.items()},
            "blocks": _describe(summary["architecture"]),
        }

    print(
        "\n## Target tracking (cost / target; argmax = TuNAS's per-decision argmax, result = "
        f"most likely within +-{args.tolerance_label})\n"
    )
    print(
        "| search | target | coarse argmax | coarse result | fine argmax | fine result (final) "
        "| MACs | params | within 5% |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        st = {s[0]: s for s in r["stages"]}
        final = r["stages"][-1][2]
        unit = "MACs" if r["key"] == "macs" or r["ridge"] == 0 else f"MAC-eq at RP {r['ridge']:g}"
        print(
            f"| {name} | {r['target'] / 1e6:.4g}M {unit} | {st['coarse'][1]:.3f} | "
            f"{st['coarse'][2]:.3f} | {st['fine'][1]:.3f} | {st['fine'][2]:.3f} | "
            f"{r['macs'] / 1e6:.3f}M | {r['params'] / 1e6:.3f}M | {'yes' if abs(final - 1) <= 0.05 else 'NO'} |"
        )
    print(
        "\nSelection per stage (method, log pi(result) - log pi(argmax), the policy's mean "
        "cost / target):"
    )
    for name, r in rows.items():
        print(
            f"  {name}: "
            + "; ".join(f"{s}: {m}, {d:+.2f}, {e:.3f}" for s, _, _, m, d, e in r["stages"])
        )
    print("\n## Hardware awareness\n")
    print(f"| search | result | cost at RP 0 | cost at RP {rp:g} | result / own target |")
    print("|---|---|---|---|---|")
    a, b = rows["rp0"], rows[f"rp{rp:g}"]
    for name, r in (("rp0", a), (f"rp{rp:g}", b)):
        print(
            f"| {name} | {r['blocks']} | {r['cost'][0.0] / 1e6:.4g}M | {r['cost'][rp] / 1e6:.4g}M "
            f"| {r['stages'][-1][2]:.3f} |"
        )
    diff = a["blocks"] != b["blocks"]
    own_a = a["cost"][0.0] < b["cost"][0.0]
    own_b = b["cost"][rp] < a["cost"][rp]
    print(
        f"\ndifferent architectures: {diff}; rp0 result cheaper at RP 0 than rp{rp:g}'s: {own_a} "
        f"({a['cost'][0.0] / b['cost'][0.0]:.3f}x); rp{rp:g} result cheaper at RP {rp:g} than "
        f"rp0's: {own_b} ({b['cost'][rp] / a['cost'][rp]:.3f}x)"
    )
    print("\nTracking ordered like the targets:")
    for group in (["rp0"] + [n for n in rows if n.startswith("macs_")],):
        order_t = sorted(group, key=lambda n: rows[n]["target"])
        order_c = sorted(group, key=lambda n: rows[n]["macs"])
        print(f"  MAC searches by target {order_t}, by result MACs {order_c}: {order_t == order_c}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="where the searches' model dirs go")
    p.add_argument("--fraction", type=float, default=0.25, help="equal-latency target position")
    p.add_argument("--ridge_point", type=float, default=400.0)
    p.add_argument("--mac_targets", type=float, nargs="+", default=[2.3e6, 2.6e6])
    p.add_argument("--steps", type=int, default=300, help="steps per stage")
    p.add_argument("--print_only", action="store_true")
    p.add_argument("--only", nargs="*", help="run only these searches (names from the plan)")
    args = p.parse_args()
    if not 0 < args.fraction < 1:
        _fail(f"--fraction must be in (0, 1), got {args.fraction}")
    if args.ridge_point <= 0:
        _fail(f"--ridge_point must be > 0 (the memory-bound device), got {args.ridge_point}")
    args.tolerance_label = "search.tolerance"
    runs = plan(args)
    for name, targets, ridge in runs:
        print(f"plan: {name} targets {targets} ridge point {ridge:g}")
    os.makedirs(args.out, exist_ok=True)
    if not args.print_only:
        for name, targets, ridge in runs:
            if args.only and name not in args.only:
                continue
            run(args, name, targets, ridge)
    tables(args, runs)


if __name__ == "__main__":
    main()
