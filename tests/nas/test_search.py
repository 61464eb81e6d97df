"""The search job: bad input is one line + exit 2 before any work; a killed search resumes."""

import json
import os
import signal
import subprocess
import sys
import time
import types

import pytest

from experiments.nas import model as nas_model_lib
from experiments.nas import tunas
from mobilenetv4 import build_record, costs, search_space
from mobilenetv4.cli import UserError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = types.SimpleNamespace(image_size=32, num_classes=10)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"targets": {"flops": 2e6}}, "unknown cost model 'flops'; choose one of macs"),
        ({"targets": {"macs": 1e6}}, r"below the cheapest architecture .* \(42\.7% under\)"),
        ({"targets": {"macs": 9e6}}, r"above the dearest architecture .* over\)"),
        (
            {"targets": {"macs": 2e6}, "fixed": {"stage3/block7/present": False}},
            "no decision 'stage3/block7/present'",
        ),
        ({"targets": {"macs": 2e6}, "plan": "three_stage"}, "search.plan must be one of"),
        ({"targets": {"macs": 2e6}, "tolerance": 1.5}, r"search.tolerance must be .*\[0, 1\]"),
        (
            {"targets": {"latency": 1.0}},
            "cost model 'latency' needs make_cost_model.latency_table",
        ),
    ],
)
def test_bad_input_is_a_user_error_before_any_work(tmp_path, kwargs, message):
    with pytest.raises(UserError, match=message):
        tunas.search(str(tmp_path / "run"), data=DATA, **kwargs)
    assert not (tmp_path / "run").exists()


def _cmd(model_dir, *params):
    return [
        sys.executable,
        "-m",
        "experiments.nas.search",
        "--gin_file=gin_configs/nas_quickstart.gin",
        f"--model_dir={model_dir}",
        "--gin_param=search.batch_size = 8",
        "--gin_param=search.log_every_steps = 2",
        *[f"--gin_param={p}" for p in params],
    ]


def test_cli_bad_binding_is_one_line_exit_2(tmp_path):
    proc = subprocess.run(
        _cmd(tmp_path / "run", "search.fixed = {'stage2/widht': 1.0}"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and "did you mean 'stage2/width'" in lines[0], proc.stderr[-2000:]


@pytest.mark.slow
def test_two_stage_search_resumes_after_kill_and_writes_a_trainable_architecture(tmp_path):
    model_dir = tmp_path / "run"
    params = ("search.steps_per_stage = 4", "search.checkpoint_every_steps = 2")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(
        _cmd(model_dir, *params), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    state = model_dir / "coarse" / "checkpoints" / "checkpoint"
    deadline = time.time() + 400
    # Kill once a checkpoint is listed: the `checkpoint` state file is written after ckpt-2's files,
    # and a kill between the two leaves nothing to resume (the rerun rightly starts afresh).
    while time.time() < deadline and 'model_checkpoint_path: "ckpt-' not in (
        state.read_text() if state.exists() else ""
    ):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (model_dir / "architecture.json").exists()
    # The kill lands a few steps after ckpt-2 at most; on a fast machine the coarse stage may have
    # finished by then (its result coarse.json written), and the rerun must then keep it.
    coarse_result = model_dir / "coarse.json"
    finished = coarse_result.read_bytes() if coarse_result.exists() else None
    done = subprocess.run(
        _cmd(model_dir, *params), cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    if finished is None:
        assert "stage coarse: resumed at step" in done.stderr, done.stderr[-3000:]
    else:
        assert coarse_result.read_bytes() == finished  # the finished stage was not redone
    summary = json.loads((model_dir / "architecture.json").read_text())
    assert summary["stages"] == ["coarse", "fine"]
    coarse = json.loads((model_dir / "coarse.json").read_text())
    # the fine stage kept the coarse widths and depth
    for key, value in coarse["values"].items():
        if key.endswith(("/width", "/present")):
            assert summary["values"][key] == value
    # TensorBoard: controller probabilities per decision and the running cost
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(str(model_dir / "coarse"))
    acc.Reload()
    tags = acc.Tags()["tensors"] + acc.Tags()["scalars"]
    assert "cost/macs" in tags and "controller/stage3/block1/present/False" in tags
    # self-describing: build.json holds the architecture; nas_model builds it for the trainer
    record = build_record.read_run(str(model_dir))
    assert record["architecture"] == summary["architecture"]
    model = nas_model_lib.nas_model(10, 32, architecture=str(model_dir / "architecture.json"))
    assert costs.count_params(model) == summary["params"]
    assert costs.total_macs(model) == summary["macs"]
    arch = search_space.architecture_from_dict(summary["architecture"])
    assert arch.stages[0][0].kind == "FusedIB"
