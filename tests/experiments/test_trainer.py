"""The training loop: learning, replicas, resume after SIGKILL, SIGTERM, errors."""

import glob
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from training_fixtures import REPO, bn_free_model, random_array_data  # noqa: E402
from experiments import data as data_lib  # noqa: E402
from experiments import trainer  # noqa: E402


def _small_mnv4(num_classes, image_size):
    return trainer.mobilenetv4_model(num_classes, image_size, dropout=0.0, width_multiplier=0.25)


def test_tiny_model_overfits_one_batch(tmp_path):
    data = random_array_data(n=16, size=32, classes=4)
    results = trainer.train(
        str(tmp_path),
        data=data,
        model_fn=_small_mnv4,
        batch_size=16,
        epochs=120,
        peak_learning_rate=0.01,
        warmup_epochs=5,
        mixed_precision="float32",
        log_every_steps=10,
        checkpoint_every_steps=1000,
    )
    assert results["step"] == 120
    assert results["train_loss"] < 0.05, results
    assert results["train_accuracy"] == 1.0
    saved = json.load(open(tmp_path / "metrics.json"))
    assert saved["step"] == 120 and os.path.exists(saved["weights"])
    assert glob.glob(str(tmp_path / "train" / "events.out.tfevents.*"))


def test_sigterm_saves_checkpoint_and_stops(tmp_path):
    data = random_array_data(n=16, size=32, classes=4)
    ckpt_dir = tmp_path / "checkpoints"

    def preempt():  # once training has checkpointed, deliver SIGTERM
        while not glob.glob(str(ckpt_dir / "ckpt-*.index")):
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=preempt, daemon=True).start()
    with pytest.raises(trainer.Preempted, match="SIGTERM") as info:
        trainer.train(
            str(tmp_path),
            data=data,
            model_fn=bn_free_model,
            batch_size=16,
            epochs=100000,
            peak_learning_rate=1e-3,
            mixed_precision="float32",
            checkpoint_every_steps=5,
            log_every_steps=1000,
        )
    stopped_at = int(str(info.value).split("step ")[1].split()[0])
    latest = tf.train.latest_checkpoint(str(ckpt_dir))
    assert latest.endswith(f"ckpt-{stopped_at}")
    assert stopped_at < 100000


def test_undecodable_image_stops_training_naming_the_file(tmp_path):
    for cls, value in (("a", 10), ("b", 200)):
        os.makedirs(tmp_path / "imgs" / cls)
        for i in range(4):
            tf.io.write_file(
                str(tmp_path / "imgs" / cls / f"{i}.png"),
                tf.io.encode_png(np.full((8, 8, 3), value, np.uint8)),
            )
    (tmp_path / "imgs" / "b" / "corrupt.png").write_bytes(b"\x00" * 64)
    pipeline = trainer.input_pipeline(
        dataset=f"folder:{tmp_path}/imgs", image_size=32, deterministic=True
    )
    with pytest.raises(data_lib.DataError, match="corrupt.png"):
        trainer.train(
            str(tmp_path / "run"),
            data=pipeline,
            model_fn=bn_free_model,
            batch_size=9,
            epochs=1,
            peak_learning_rate=1e-3,
            mixed_precision="float32",
        )


# ------------------------------------------------------------- subprocesses
ENV = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", TF_DETERMINISTIC_OPS="1")
RESUME_PARAMS = [
    "input_pipeline.image_size = 32",
    "input_pipeline.deterministic = True",
    "mobilenetv4_model.width_multiplier = 0.25",
    "mobilenetv4_model.dropout = 0.2",
    "train.epochs = 1",
    "train.warmup_epochs = 0.25",
    "train.checkpoint_every_steps = 4",
    "train.log_every_steps = 4",
    "train.ema_decay = 0.9",
]


def _train_cmd(model_dir, params):
    return [
        sys.executable,
        "-m",
        "experiments.train",
        "--gin_file=gin_configs/quickstart.gin",
        f"--model_dir={model_dir}",
    ] + [f"--gin_param={p}" for p in params]


def _checkpoint_values(model_dir):
    reader = tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints"))
    return {
        k: reader.get_tensor(k)
        for k in reader.get_variable_to_shape_map()
        if "save_counter" not in k and "_CHECKPOINTABLE_OBJECT_GRAPH" not in k
    }


def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path):
    """Kill -9 after the step-8 checkpoint, rerun the command: the final
    weights, optimizer slots, EMA and step equal an uninterrupted run's."""
    reference = subprocess.Popen(
        _train_cmd(tmp_path / "ref", RESUME_PARAMS),
        cwd=REPO,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    killed_dir = tmp_path / "killed"
    victim = subprocess.Popen(
        _train_cmd(killed_dir, RESUME_PARAMS),
        cwd=REPO,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 900  # bound for a heavily loaded machine
    while not glob.glob(str(killed_dir / "checkpoints" / "ckpt-8.index")):
        assert victim.poll() is None and time.time() < deadline, "no checkpoint"
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not (killed_dir / "metrics.json").exists()  # really interrupted
    resumed = subprocess.run(
        _train_cmd(killed_dir, RESUME_PARAMS),
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stderr
    assert reference.wait(timeout=900) == 0
    ref = json.load(open(tmp_path / "ref" / "metrics.json"))
    got = json.load(open(killed_dir / "metrics.json"))
    assert got["step"] == ref["step"] == 22
    a, b = _checkpoint_values(tmp_path / "ref"), _checkpoint_values(killed_dir)
    assert a.keys() == b.keys()
    assert any("ema" in k for k in a) and any("/m/" in k or ".ATTRIBUTES" in k for k in a)
    worst = max(
        float(np.max(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64))))
        for k in a
        if a[k].dtype != object
    )
    assert worst <= 1e-6, f"max |difference| {worst}"
    assert got["eval_top1"] == pytest.approx(ref["eval_top1"], abs=1e-9)
    assert got["weights_sha256"] == ref["weights_sha256"]
    # The run describes itself (issue 12): build.json and the final weights.
    from mobilenetv4 import build_record

    record = build_record.read_run(killed_dir)
    assert record["model"] == "conv_small" and record["input_size"] == [32, 32]
    assert record["build"]["width_multiplier"] == 0.25
    assert record["build"]["classes"] == 10
    assert record["data"] == "sklearn_digits" and record["has_ema"] is True
    assert record["preprocessing"] == "imagenet"
    assert record["eval_crop_fraction"] == 1.0
    assert build_record.read_h5(killed_dir / "final.weights.h5")["weights"] == "ema"
    assert build_record.read_h5(killed_dir / "final_raw.weights.h5")["weights"] == "raw"


def test_cli_errors_are_one_line(tmp_path):
    bad = subprocess.run(
        _train_cmd(tmp_path, ["train.epochz = 1"]),
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("error: bad gin")
    assert "epochz" in bad.stderr and "Traceback" not in bad.stderr


def test_missing_dataset_directory_is_named():
    # The CLI prints DataError messages as one line (exit 2), as for gin above.
    with pytest.raises(data_lib.DataError, match="/no/such/dir"):
        trainer.input_pipeline(dataset="folder:/no/such/dir")


def test_two_replicas_match_one_replica():
    out = subprocess.run(
        [sys.executable, os.path.join(os.path.dirname(__file__), "replica_check.py")],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["replicas"] == [1, 2]
    assert result["max_abs_init_difference"] == 0.0, result
    assert result["max_abs_weight_difference"] < 1e-5, result
    assert result["max_abs_ema_difference"] < 1e-5, result
    assert result["max_abs_weight_change"] > 1e-3, result  # it did train
