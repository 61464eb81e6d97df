"""Cost models: analytic from the spec, equal to the counts on built models; reward; errors."""

import json
import random

import pytest

from experiments.nas import cost_models, latency_table
from mobilenetv4 import builder, costs, search_space, spec_costs
from mobilenetv4.cli import UserError
from mobilenetv4.roofline import analysis, ops


def _samples(n, seed=0):
    space = search_space.get("quickstart", "one_stage")
    rng = random.Random(seed)
    return [
        space.decode({d.name: rng.choice(d.choices) for d in space.decisions}) for _ in range(n)
    ]


def test_spec_costs_equal_built_model_counts():
    for arch in _samples(3):
        model = builder.build_model(arch, input_shape=(32, 32, 3), classes=10)
        assert cost_models.MacsCost(32, 10)(arch) == costs.total_macs(model)
        built_ops = analysis.roofline_ops(model)
        spec_ops = spec_costs.roofline_ops(arch, 32, 10)
        assert [(o.block, o.kind, o.macs, o.bytes) for o in built_ops] == [
            (o.block, o.kind, o.macs, o.bytes) for o in spec_ops
        ]
        for rp in (0.0, 400.0):
            assert cost_models.RooflineCost(rp, input_size=32, classes=10)(arch) == pytest.approx(
                ops.model_time(built_ops, rp)
            )
        assert spec_costs.count_params(arch, 10) == costs.count_params(model)


def test_roofline_at_ridge_zero_is_macs_and_grows_with_ridge():
    arch = _samples(1)[0]
    macs = cost_models.MacsCost(32, 10)(arch)
    assert cost_models.RooflineCost(0.0, input_size=32, classes=10)(arch) == macs
    assert cost_models.RooflineCost(400.0, input_size=32, classes=10)(arch) > macs


def test_reward_and_targets():
    target = cost_models.Target(cost_models.MacsCost(32, 10), 100.0)
    assert cost_models.absolute_reward(0.9, [110.0], [target]) == pytest.approx(0.9 - 0.01)
    assert cost_models.absolute_reward(0.9, [90.0], [target]) == pytest.approx(0.9 - 0.01)
    dual = [target, cost_models.Target(cost_models.MacsCost(32, 10), 50.0)]
    assert cost_models.absolute_reward(1.0, [100.0, 100.0], dual) == pytest.approx(0.9)
    with pytest.raises(UserError, match="finite number > 0"):
        cost_models.Target(target.cost_model, -1.0)


def _policy(space, seed):
    import numpy as np

    rng = np.random.default_rng(seed)
    out = []
    for d in space.decisions:
        x = rng.normal(size=len(d.choices)) * 2
        out.append(x - np.log(np.exp(x).sum()))
    return out


@pytest.mark.parametrize("stage", ["coarse", "fine"])
def test_selection_is_the_most_likely_architecture_within_the_band(stage):
    import itertools

    space = search_space.get("quickstart", "coarse")
    if stage == "fine":
        space = space.fine_after(space.values({f"stage{s}/width": 1.5 for s in (1, 2, 3, 4)}))
    macs = cost_models.MacsCost(32, 10)
    log_probs = _policy(space, 3)
    argmax = [int(lp.argmax()) for lp in log_probs]
    at_argmax = macs(space.decode(space.from_indices(argmax)))
    # a target the argmax meets: the argmax is the result
    ok = cost_models.select_architecture(
        space, log_probs, [cost_models.Target(macs, at_argmax)], 0.02
    )
    assert ok["method"] == "argmax" and ok["indices"] == argmax and ok["feasible"]
    # a target at the far end of the space's range from the argmax: the result is the most
    # likely architecture inside +-2%
    far = max(cost_models.cost_range(space, macs), key=lambda c: abs(c - at_argmax))
    target = cost_models.Target(macs, far)
    assert abs(at_argmax / target.value - 1) > 0.02  # the argmax is outside the band
    pick = cost_models.select_architecture(space, log_probs, [target], 0.02)
    cost = macs(space.decode(space.from_indices(pick["indices"])))
    assert pick["feasible"] and abs(cost / target.value - 1) <= 0.02
    assert pick["argmax_ratios"][0] == pytest.approx(at_argmax / target.value)
    if pick["method"] == "exhaustive":  # exact: no architecture in the band is more likely
        best = max(
            sum(lp[i] for lp, i in zip(log_probs, idx))
            for idx in itertools.product(*[range(len(lp)) for lp in log_probs])
            if abs(macs(space.decode(space.from_indices(idx))) / target.value - 1) <= 0.02
        )
        assert pick["log_prob"] == pytest.approx(best)
    else:  # too large to enumerate: the argmax's neighbours and policy samples
        assert pick["method"] == "neighbours+samples" and pick["candidates"] > 1000
    # no tolerance: TuNAS's argmax
    plain = cost_models.select_architecture(space, log_probs, [target], None)
    assert plain["indices"] == argmax


def test_unknown_cost_model_and_unreachable_targets():
    with pytest.raises(UserError, match="unknown cost model 'flops'; choose one of macs"):
        cost_models.make_cost_model("flops")
    space = search_space.get("quickstart", "coarse")
    macs = cost_models.MacsCost(32, 10)
    low, high = cost_models.cost_range(space, macs)
    assert low < macs(space.decode({})) < high
    with pytest.raises(UserError, match=r"below the cheapest .* \(50\.0% under\)"):
        cost_models.check_reachable(space, [cost_models.Target(macs, low / 2)])
    with pytest.raises(UserError, match=r"above the dearest .* \(100\.0% over\)"):
        cost_models.check_reachable(space, [cost_models.Target(macs, high * 2)])
    assert cost_models.check_reachable(space, [cost_models.Target(macs, (low + high) / 2)])


def _table(tmp_path, arch, size=32, device="host:test"):
    entries = {
        key: 0.5 + i for i, (key, *_) in enumerate(latency_table.architecture_rows(arch, size, 10))
    }
    table = {"format": 1, "device": device, "input_size": size, "classes": 10, "entries": entries}
    path = tmp_path / "table.json"
    path.write_text(json.dumps(table))
    return path, entries


def test_latency_table_sum_and_mismatches(tmp_path):
    arch = _samples(1)[0]
    path, entries = _table(tmp_path, arch)
    cost = cost_models.make_cost_model(
        "latency", input_size=32, latency_table=str(path), device="host:test"
    )
    assert cost(arch) == pytest.approx(sum(entries.values()))
    with pytest.raises(UserError, match="measured at 32 px, the search runs at 64 px"):
        cost_models.make_cost_model("latency", input_size=64, latency_table=str(path))
    with pytest.raises(UserError, match="measured on 'host:test', not 'pixel6'"):
        cost_models.make_cost_model(
            "latency", input_size=32, latency_table=str(path), device="pixel6"
        )
    other = _samples(2, seed=5)[1]
    if other != arch:
        with pytest.raises(UserError, match="latency table has no row"):
            cost(other)


def test_spearman():
    assert latency_table.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert latency_table.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
