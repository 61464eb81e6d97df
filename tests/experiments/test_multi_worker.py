"""Scale-out, proven: two worker processes on 127.0.0.1 (TF_CONFIG,
--strategy=multi_worker) train the quickstart for a few steps.

Checks: only the chief writes checkpoints, summaries and the run's files into
the shared model_dir (the other worker saves to its own temporary directory);
both workers end with bit-identical weights; after a SIGKILL of one worker, a
restart of both resumes from the last checkpoint.
"""

import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from training_fixtures import REPO  # noqa: E402

TINY = [
    "input_pipeline.image_size = 32",
    "input_pipeline.deterministic = True",
    "mobilenetv4_model.width_multiplier = 0.25",
    "train.batch_size = 32",
    "train.max_steps = 6",
    "train.checkpoint_every_steps = 2",
    "train.log_every_steps = 2",
    "train.ema_decay = 0.9",
]
DEADLINE_S = 1200  # per round; generous, for a heavily loaded shared machine


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _start_workers(tmp_path, model_dir, tag):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for i in range(2):
        scratch = tmp_path / f"{tag}_tmp{i}"
        scratch.mkdir(exist_ok=True)
        env = dict(
            os.environ,
            PYTHONPATH=REPO,
            TF_CPP_MIN_LOG_LEVEL="2",
            TMPDIR=str(scratch),
            TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}),
        )
        out = open(tmp_path / f"{tag}_out{i}.txt", "w")
        err = open(tmp_path / f"{tag}_err{i}.txt", "w")
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "experiments.train",
                    "--gin_file=gin_configs/quickstart.gin",
                    f"--model_dir={model_dir}",
                    "--strategy=multi_worker",
                ]
                + [f"--gin_param={p}" for p in TINY],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=err,
            )
        )
    return procs


def _kill_all(procs):
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def _latest_step(ckpt_dir):
    """The step of the newest complete checkpoint (the `checkpoint` state file
    is written after the checkpoint's files)."""
    try:
        text = open(os.path.join(ckpt_dir, "checkpoint")).read()
    except OSError:
        return None
    found = re.search(r'^model_checkpoint_path: "ckpt-(\d+)"', text, re.M)
    return int(found.group(1)) if found else None


def _results(path):
    text = open(path).read()
    return json.loads(text[text.index("{") : text.rindex("}") + 1])


@pytest.mark.slow  # four TensorFlow processes (two rounds of two workers)
def test_two_workers_train_identically_and_resume_after_sigkill(tmp_path):
    model_dir = tmp_path / "run"
    ckpt_dir = str(model_dir / "checkpoints")

    # Round 1: SIGKILL worker 1 once the chief has a complete checkpoint.
    procs = _start_workers(tmp_path, model_dir, "first")
    try:
        deadline = time.time() + DEADLINE_S
        while _latest_step(ckpt_dir) is None:
            assert all(p.poll() is None for p in procs), open(tmp_path / "first_err0.txt").read()[
                -3000:
            ]
            assert time.time() < deadline, "no checkpoint in time"
            time.sleep(0.05)
        procs[1].send_signal(signal.SIGKILL)
        procs[1].wait()
    finally:
        _kill_all(procs)  # the chief waits on the dead peer's collectives
    killed_at = _latest_step(ckpt_dir)
    assert killed_at is not None and killed_at < 6
    assert not (model_dir / "metrics.json").exists()  # really interrupted
    # The non-chief saved its checkpoints privately, never into model_dir.
    assert glob.glob(str(tmp_path / "first_tmp1" / "worker_ckpt_*"))
    first_pids = [p.pid for p in procs]

    # Round 2: restart both; they resume from the last checkpoint and finish.
    procs = _start_workers(tmp_path, model_dir, "second")
    try:
        codes = [p.wait(timeout=DEADLINE_S) for p in procs]
    finally:
        _kill_all(procs)
    errs = [open(tmp_path / f"second_err{i}.txt").read() for i in range(2)]
    assert codes == [0, 0], errs[0][-2000:] + errs[1][-2000:]
    for err in errs:
        found = re.search(r"resumed from (\S+) at step (\d+)", err)
        assert found, err[-2000:]
        assert found.group(1) == os.path.join(ckpt_dir, f"ckpt-{killed_at}")
        assert int(found.group(2)) == killed_at
    chief, worker = (_results(tmp_path / f"second_out{i}.txt") for i in range(2))
    assert chief["chief"] is True and worker["chief"] is False
    assert chief["step"] == worker["step"] == 6
    assert chief["weights_sha256"] == worker["weights_sha256"]  # identical weights
    assert chief["replicas"] == worker["replicas"] == 2
    assert "weights" in chief and "weights" not in worker

    # Only the chief wrote into model_dir: summaries carry its pid, it holds the
    # lock, the worker checkpointed under its own TMPDIR (removed at the end).
    chief_pid, worker_pid = procs[0].pid, procs[1].pid
    events = glob.glob(str(model_dir / "train" / "events.out.tfevents.*")) + glob.glob(
        str(model_dir / "eval" / "events.out.tfevents.*")
    )
    assert events
    # events.out.tfevents.TIME.HOST.PID.N.v2 (HOST may contain dots)
    writers = {int(re.search(r"\.(\d+)\.\d+\.v2$", e).group(1)) for e in events}
    assert chief_pid in writers
    assert writers <= {chief_pid, first_pids[0]}, (writers, first_pids, worker_pid)
    assert (model_dir / ".lock").read_text().strip() == str(chief_pid)
    assert f"checkpoints in {ckpt_dir}" in errs[0]
    assert f"checkpoints in {tmp_path / 'second_tmp1'}" in errs[1]
    assert not glob.glob(str(tmp_path / "second_tmp1" / "worker_ckpt_*"))
    assert sorted(os.listdir(ckpt_dir)) == sorted(
        ["checkpoint"] + [f for f in os.listdir(ckpt_dir) if f.startswith("ckpt-")]
    )
    record = json.load(open(model_dir / "build.json"))
    assert record["model"] == "conv_small" and record["weights"] == "ema"
    assert sorted(f for f in os.listdir(model_dir) if not f.startswith(".")) == [
        "build.json",
        "checkpoints",
        "eval",
        "final.weights.h5",
        "final_raw.weights.h5",
        "metrics.json",
        "operative_config.gin",
        "train",
    ]
