"""python -m experiments.nas.analyze: the found architecture in Tables 11-15's layout with its costs,
written as a spec that create_model and the trainer's nas_model build; bad dirs exit 2."""

import json
import os
import subprocess
import sys
import types

import pytest

from experiments.nas import analyze, cost_models, tunas
from experiments.nas import model as nas_model_lib
from mobilenetv4 import costs, create_model, fileio, search_space, specs
from mobilenetv4.cli import UserError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def search_dir(tmp_path):
    """A finished search's dir as tunas writes it (the summary from tunas._summary), without
    training: a fine-stage result of the quickstart space at a roofline target, ridge point 100."""
    space = search_space.get("quickstart", "one_stage")
    values = {d.name: d.choices[-1] for d in space.decisions}
    arch = space.decode(values, name="nas_quickstart_fine")
    roofline = cost_models.RooflineCost(100.0, 1.0, "int8", 32, 10)
    target = cost_models.Target(roofline, 1.1 * roofline(arch))
    result = {
        "stage": "fine",
        "values": values,
        "architecture": search_space.architecture_to_dict(arch),
        "costs": {"roofline": {"value": roofline(arch), "target": target.value, "ratio": 1 / 1.1}},
    }
    args = types.SimpleNamespace(space="quickstart", plan="two_stage")
    data = types.SimpleNamespace(
        image_size=32, num_classes=10, num_eval_examples=360, num_validation_examples=286
    )
    summary = tunas._summary(args, data, [result], [target], [(1.0, 2.0)])  # pylint: disable=protected-access
    fileio.write_json(tmp_path / "architecture.json", summary)
    return tmp_path, arch


def test_report_lists_blocks_and_costs_and_the_spec_builds(search_dir, tmp_path, capsys):
    directory, arch = search_dir
    out = tmp_path / "found.json"
    assert analyze.main([str(directory), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    for text in ("FusedIB", "ExtraDW", "Stride", "roofline RP 0 ", "RP 400", "RP 100", "MACs:"):
        assert text in printed, text
    assert "rewards came from the validation split (286 examples)" in printed
    written = json.loads(out.read_text())
    expected_macs = costs.total_macs(create_model_of(arch))
    assert written["macs"] == expected_macs == written["costs"]["MACs"]
    by_ridge = [
        written["costs"][f"roofline RP {rp} (MAC-equivalents, int8)"] for rp in (0, 100, 400)
    ]
    assert by_ridge[0] == expected_macs < by_ridge[1] < by_ridge[2]  # Eq. 1: RP 0 counts MACs
    # the spec: create_model(architecture=FILE) and the trainer's one binding build the network
    model = create_model(architecture=str(out), input_shape=(32, 32, 3), classes=10)
    assert costs.count_params(model) == written["params"]
    trained = nas_model_lib.nas_model(10, 32, architecture=str(out))
    assert costs.count_params(trained) == written["params"]
    blocks = [r["block"] for r in written["rows"]]
    assert blocks[0] == "Conv2D" and blocks[1] == "FusedIB" and "AvgPool" in blocks
    assert len(blocks) == 1 + sum(len(s) for s in arch.stages) + 4  # stem, blocks, head


def create_model_of(arch):
    return create_model(architecture=arch, input_shape=(32, 32, 3), classes=10)


def test_python_spec_defines_the_architecture(search_dir, tmp_path):
    directory, arch = search_dir
    out = tmp_path / "found.py"
    assert analyze.main([str(directory), "--output", str(out), "--format", "markdown"]) == 0
    namespace = {}
    exec(compile(out.read_text(), str(out), "exec"), namespace)  # noqa: S102  (our own output)
    assert namespace["ARCHITECTURE"] == arch
    assert isinstance(namespace["ARCHITECTURE"], specs.Architecture)
    with pytest.raises(UserError, match="not both"):
        create_model("conv_small", architecture=arch)


def test_unfinished_or_malformed_dirs_are_user_errors(search_dir, tmp_path):
    directory, _ = search_dir
    with pytest.raises(UserError, match="already exists"):
        analyze.main([str(directory), "--output", str(directory / "architecture.json")])
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "coarse.json").write_text("{}")
    with pytest.raises(UserError, match=r"not a finished search \(finished stages: coarse\)"):
        analyze.main([str(unfinished)])
    (unfinished / "architecture.json").write_text('{"architecture": {"stages": []}}')
    with pytest.raises(UserError, match="malformed architecture spec"):
        analyze.main([str(unfinished)])


def test_cli_missing_dir_is_one_line_exit_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.nas.analyze", str(tmp_path / "nope")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'nope'} does not exist; give a search's --model_dir"
    ]
