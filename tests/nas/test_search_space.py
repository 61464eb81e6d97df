"""The search space (Appendix A) as data: the paper's Conv tables are points of it."""

import random

import pytest

import mobilenetv4
from mobilenetv4 import costs, search_space, spec_costs, specs
from mobilenetv4.cli import UserError


@pytest.mark.parametrize("name", ["conv_small", "conv_medium", "conv_large"])
def test_paper_tables_from_choice_indices(name):
    space = search_space.get(name, expressive=True)
    indices = space.indices(space.encode(specs.get(name)))
    assert len(indices) == len(space.decisions)
    arch = space.decode(space.from_indices(indices), name=name)
    assert arch.stages == specs.get(name).stages
    assert arch.stem == specs.get(name).stem
    # equal rows build equal models; the counts come from create_model's own model
    model = mobilenetv4.create_model(name, input_shape=(64, 64, 3))
    if name == "conv_small":  # the decoded spec through the builder, once
        built = mobilenetv4.builder.build_model(arch, input_shape=(64, 64, 3))
        assert built.count_params() == model.count_params()
    # the analytic count used during the search agrees with the built model
    assert spec_costs.count_params(arch) == costs.count_params(model)
    assert spec_costs.count_params(arch, trainable=False) == model.count_params()


def test_paper_search_space_stages():
    coarse = search_space.get("conv_medium", "coarse")
    names = [d.name for d in coarse.decisions]
    # coarse: widths, fused expansion, block presence; never DW kernels (IB e4 3x3 fixed)
    assert "stage1/width" in names and "stage1/expand" in names
    assert "stage3/block1/present" in names
    assert not any(n.endswith(("start_dw", "middle_dw")) for n in names)
    arch = coarse.decode({})
    assert all(b.kind == "IB" and b.middle_dw == 3 and b.expand == 4 for b in arch.stages[1])
    # fine after a coarse result: depth and widths fixed, DWs searched only for present blocks
    result = coarse.values({"stage3/width": 1.25, "stage3/block2/present": False})
    fine = coarse.fine_after(result)
    fnames = [d.name for d in fine.decisions]
    assert all(n.endswith(("start_dw", "middle_dw")) for n in fnames)
    assert "stage3/block2/start_dw" not in fnames and "stage3/block1/start_dw" in fnames
    decoded = fine.decode({"stage3/block1/start_dw": 5})
    assert decoded.stages[2][0].filters == 160 and len(decoded.stages[2]) == 9
    assert decoded.stages[2][1].kind == "ExtraDW"
    # one stage: the union
    one = search_space.get("conv_medium", "one_stage")
    assert set(names) | set(fnames) <= {d.name for d in one.decisions}


def test_every_sampled_architecture_is_valid_and_block0_carries_stride():
    space = search_space.get("quickstart", "one_stage")
    rng = random.Random(0)
    for _ in range(200):
        idx = [rng.randrange(len(d.choices)) for d in space.decisions]
        arch = space.decode(space.from_indices(idx))
        for stage in arch.stages[1:]:
            assert stage[0].stride == 2 and stage[0].kind != "FFN"


def test_bad_decisions_are_user_errors():
    space = search_space.get("quickstart", "coarse")
    with pytest.raises(UserError, match="no decision 'stage3/block9/present'"):
        space.with_fixed({"stage3/block9/present": False})
    with pytest.raises(UserError, match="not a choice"):
        space.with_fixed({"stage2/width": 3.0})
    with pytest.raises(UserError, match="not in search space"):
        space.encode(specs.get("conv_medium"))


def test_architecture_json_round_trip():
    arch = specs.get("conv_small")
    assert search_space.architecture_from_dict(search_space.architecture_to_dict(arch)) == arch
    with pytest.raises(UserError, match="unknown block type"):
        search_space.architecture_from_dict(
            {**search_space.architecture_to_dict(arch), "stem": {"type": "Lambda"}}
        )
