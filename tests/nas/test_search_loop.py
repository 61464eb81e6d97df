"""The search on the shared training loop: SIGTERM saves the running stage and stops
(loop.Preempted, exit 143 from the CLI); rerunning resumes from that checkpoint."""

import glob
import os
import signal
import sys
import threading
import time

import pytest
import tensorflow as tf

sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments")
)
from training_fixtures import random_array_data

from experiments import loop
from experiments.nas import tunas

SEARCH = {
    "targets": {"macs": 2.3e6},
    "plan": "one_stage",
    "batch_size": 4,
    "checkpoint_every_steps": 2,
    "log_every_steps": 1,
}


def test_sigterm_saves_the_stage_and_a_rerun_resumes(tmp_path, caplog):
    data = random_array_data(n=16, size=32, classes=10)
    ckpt_dir = tmp_path / "one_stage" / "checkpoints"

    def preempt():  # once the stage has checkpointed, deliver SIGTERM
        while not glob.glob(str(ckpt_dir / "ckpt-*.index")):
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    threading.Thread(target=preempt, daemon=True).start()
    with pytest.raises(loop.Preempted, match="SIGTERM") as info:
        tunas.search(str(tmp_path), data=data, steps_per_stage=10_000, **SEARCH)
    stopped_at = int(str(info.value).split("step ")[1].split()[0])
    assert tf.train.latest_checkpoint(str(ckpt_dir)).endswith(f"ckpt-{stopped_at}")
    assert not (tmp_path / "one_stage.json").exists()
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is given back

    caplog.set_level("INFO")
    summary = tunas.search(str(tmp_path), data=data, steps_per_stage=stopped_at + 2, **SEARCH)
    assert f"stage one_stage: resumed at step {stopped_at}" in caplog.text
    assert summary["stages"] == ["one_stage"] and (tmp_path / "one_stage.json").exists()
    assert summary["reward_split"] == {"split": "eval", "examples": 16}
    assert tf.train.latest_checkpoint(str(ckpt_dir)).endswith(f"ckpt-{stopped_at + 2}")
