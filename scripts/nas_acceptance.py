r"""Issue #14's target-tracking and hardware-awareness acceptance searches, and their tables.

  python scripts/nas_acceptance.py --out /tmp/nas_acceptance            # run, then print
  python scripts/nas_acceptance.py --out /tmp/nas_acceptance --print_only

Protocol (all on the quickstart configuration, gin_configs/nas_quickstart.gin: digits at 32 px,
space `quickstart`, two stages of `--steps` steps, `--seed`, one search per row, run one after
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
`--found_vs_random` (search beats chance; two-stage vs one-stage, paper Table 4): two searches at
`--fvr_target` MACs with rewards from the validation split the quickstart carves out of the
training split (gin_configs/nas_quickstart.gin: input_pipeline.validation_fraction), the two-stage one and a one-stage one with both stages'
steps; `--randoms` uniform samples of the one-stage space within +-5% of the two-stage result's
MACs (rejection sampling, seed 7); each network trained stand-alone with
gin_configs/nas_train_found.gin for `--epochs` epochs per `--train_seeds` seed; top-1 on digits'
eval split (which no search saw).
A finished search (MODEL_DIR/architecture.json) or training (metrics.json) is not rerun.
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
    _search(
        args,
        name,
        targets,
        [
            f"make_cost_model.ridge_point = {float(ridge_point)!r}",
            f"search.steps_per_stage = {args.steps}",
            f"search.seed = {args.seed}",
        ],
    )


def _load(args, name):
    d = os.path.join(args.out, name)
    if not os.path.exists(os.path.join(d, "architecture.json")):
        _fail(f"{d} holds no finished search; run without --print_only first")
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
    return ", ".join(parts)


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


# --- search beats chance, two-stage vs one-stage (rewards from a carved split) -------------------


def _search(args, name, targets, params):
    """One quickstart search into OUT/name with `targets` and extra gin `params` (skipped if done)."""
    model_dir = os.path.join(args.out, name)
    if os.path.exists(os.path.join(model_dir, "architecture.json")):
        print(f"{name}: done earlier ({model_dir})", flush=True)
        return model_dir
    cmd = [
        sys.executable,
        "-m",
        "experiments.nas.search",
        "--gin_file=gin_configs/nas_quickstart.gin",
        f"--model_dir={model_dir}",
        f"--gin_param=search.targets = {targets!r}",
        *[f"--gin_param={p}" for p in params],
    ]
    _call(args, name, cmd)
    return model_dir


def _call(args, name, cmd):
    start = time.time()
    print(f"{name}: {' '.join(cmd[2:])}", flush=True)
    with open(os.path.join(args.out, f"{name}.log"), "w") as log:
        code = subprocess.call(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    print(f"{name}: exit {code} after {(time.time() - start) / 60:.1f} min", flush=True)
    if code:
        _fail(f"{name} failed (exit {code}); see {args.out}/{name}.log")


def _random_architectures(args, macs, count, seed=7):
    """`count` uniform samples of the one-stage space within +-5% of `macs` (rejection)."""
    import numpy as np  # pylint: disable=g-import-not-at-top

    space = search_space.get("quickstart", "one_stage")
    rng = np.random.default_rng(seed)
    paths, tries = [], 0
    while len(paths) < count:
        tries += 1
        values = {d.name: d.choices[rng.integers(len(d.choices))] for d in space.decisions}
        arch = space.decode(values, name=f"random{len(paths)}")
        if abs(spec_costs.total_macs(arch, SIZE, CLASSES) / macs - 1) > 0.05:
            continue
        path = os.path.join(args.out, f"random{len(paths)}.json")
        with open(path, "w") as f:
            json.dump({"architecture": search_space.architecture_to_dict(arch)}, f, indent=1)
        paths.append(path)
    print(f"random architectures: {count} kept of {tries} uniform samples (seed {seed})")
    return paths


def _train(args, name, arch_path, seed):
    model_dir = os.path.join(args.out, "train", f"{name}_s{seed}")
    metrics = os.path.join(model_dir, "metrics.json")
    if not os.path.exists(metrics):
        _call(
            args,
            f"train_{name}_s{seed}",
            [
                sys.executable,
                "-m",
                "experiments.train",
                "--gin_file=gin_configs/nas_train_found.gin",
                f"--gin_param=nas_model.architecture = {arch_path!r}",
                f"--gin_param=train.seed = {seed}",
                f"--gin_param=train.epochs = {args.epochs}",
                f"--model_dir={model_dir}",
            ],
        )
    with open(metrics) as f:
        return float(json.load(f)["eval_top1"])


def found_vs_random(args):
    """Two carved-reward searches (two-stage, one-stage with both stages' steps), `--randoms`
    random architectures within +-5% of the two-stage result's MACs, each trained stand-alone
    with `--train_seeds`; prints the table."""
    import statistics  # pylint: disable=g-import-not-at-top

    target = {"macs": args.fvr_target}
    two = _search(args, "carved_two_stage", target, [])
    one = _search(
        args,
        "carved_one_stage",
        target,
        ["search.plan = 'one_stage'", f"search.steps_per_stage = {2 * args.steps}"],
    )
    nets = {}
    for name, d in (("two-stage search", two), ("one-stage search", one)):
        nets[name] = os.path.join(d, "architecture.json")
    found = search_space.architecture_from_dict(_load_arch(nets["two-stage search"]))
    found_macs = spec_costs.total_macs(found, SIZE, CLASSES)
    for i, path in enumerate(_random_architectures(args, found_macs, args.randoms)):
        nets[f"random{i}"] = path
    rows = {}
    for name, path in nets.items():
        arch = search_space.architecture_from_dict(_load_arch(path))
        accs = [_train(args, name.split()[0], path, seed) for seed in args.train_seeds]
        rows[name] = (spec_costs.total_macs(arch, SIZE, CLASSES), accs, _describe(_load_arch(path)))
    print(f"\n## Found vs random (top-1 % on digits' eval split; {args.epochs} epochs)\n")
    seeds = " | ".join(f"seed {s}" for s in args.train_seeds)
    print(f"| network | MACs | {seeds} | mean | blocks |")
    print("|---|---|" + "---|" * len(args.train_seeds) + "---|---|")
    for name, (macs, accs, blocks) in rows.items():
        per_seed = " | ".join(f"{a * 100:.1f}" for a in accs)
        print(
            f"| {name} | {macs / 1e6:.3f}M | {per_seed} | {statistics.mean(accs) * 100:.1f} "
            f"| {blocks} |"
        )
    randoms = [statistics.mean(a) for n, (_, a, _) in rows.items() if n.startswith("random")]
    median = statistics.median(randoms)
    mean_found = statistics.mean(rows["two-stage search"][1])
    better = sum(r > mean_found for r in randoms)
    print(
        f"\nmedian of the {len(randoms)} random means: {median * 100:.1f}; two-stage result "
        f"{mean_found * 100:.1f} (>= median: {mean_found >= median}; {better} random network(s) "
        f"better); one-stage result {statistics.mean(rows['one-stage search'][1]) * 100:.1f}"
    )


def _load_arch(path):
    with open(path) as f:
        data = json.load(f)
    return data.get("architecture", data)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="where the searches' model dirs go")
    p.add_argument("--fraction", type=float, default=0.25, help="equal-latency target position")
    p.add_argument("--ridge_point", type=float, default=400.0)
    p.add_argument("--mac_targets", type=float, nargs="+", default=[2.3e6, 2.6e6])
    p.add_argument("--steps", type=int, default=300, help="steps per stage")
    p.add_argument("--seed", type=int, default=0, help="search.seed of every search")
    p.add_argument("--print_only", action="store_true")
    p.add_argument("--only", nargs="*", help="run only these searches (names from the plan)")
    p.add_argument(
        "--found_vs_random",
        action="store_true",
        help="instead: carved-reward searches, random architectures, stand-alone training",
    )
    p.add_argument("--fvr_target", type=float, default=2.3e6, help="MACs target of that mode")
    p.add_argument("--randoms", type=int, default=8)
    p.add_argument("--epochs", type=int, default=15, help="stand-alone training epochs")
    p.add_argument("--train_seeds", type=int, nargs="+", default=[0, 1], help="train.seed values")
    args = p.parse_args()
    if not 0 < args.fraction < 1:
        _fail(f"--fraction must be in (0, 1), got {args.fraction}")
    if args.ridge_point <= 0:
        _fail(f"--ridge_point must be > 0 (the memory-bound device), got {args.ridge_point}")
    args.tolerance_label = "search.tolerance"
    if args.found_vs_random:
        os.makedirs(args.out, exist_ok=True)
        found_vs_random(args)
        return
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
