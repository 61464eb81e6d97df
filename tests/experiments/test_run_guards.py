"""Issue 16 #5, #7, #8 for the trainer: the run-directory lock, impossible
hyper-parameters and unusable model_dirs are refused with one line before
anything is built, and nothing already on disk changes."""

import hashlib
import os
import signal
import subprocess
import sys

import gin
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from training_fixtures import REPO, bn_free_model, random_array_data  # noqa: E402
from experiments import trainer  # noqa: E402
from mobilenetv4 import fileio  # noqa: E402
from mobilenetv4.cli import UserError  # noqa: E402

ENV = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
TINY = dict(
    model_fn=bn_free_model,
    batch_size=8,
    epochs=1,
    peak_learning_rate=1e-3,
    mixed_precision="float32",
    log_every_steps=1000,
)


@pytest.fixture(autouse=True)
def clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def _checksums(root):
    sums = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                sums[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return sums


def _previous_run(model_dir):
    """A model_dir with files a finished run left (contents are placeholders)."""
    os.makedirs(os.path.join(model_dir, "checkpoints"))
    for name, text in (
        ("metrics.json", '{"step": 7}\n'),
        ("build.json", '{"format": 1, "model": "conv_small"}\n'),
        ("checkpoints/checkpoint", 'model_checkpoint_path: "x"\n'),
    ):
        with open(os.path.join(model_dir, name), "w") as f:
            f.write(text)
    return _checksums(model_dir)


def _one_line(error):
    """The line the CLI prints (gin may append its call context below it)."""
    return str(error).splitlines()[0]


def _cli(model_dir, params=(), extra=()):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.train",
            "--gin_file=gin_configs/quickstart.gin",
            f"--model_dir={model_dir}",
        ]
        + [f"--gin_param={p}" for p in params]
        + list(extra),
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _assert_exit_2(result, *words):
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: "), result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[-1], lines[-1]
    return lines[-1]


# ------------------------------------------------------------------- lock
def test_live_run_directory_is_refused_and_left_alone(tmp_path):
    model_dir = str(tmp_path / "run")
    before = _previous_run(model_dir)
    with fileio.RunLock(model_dir):  # a live job holds it
        with pytest.raises(fileio.RunLocked) as info:
            trainer.train(model_dir, data=random_array_data(n=16, size=16), **TINY)
    message = _one_line(info.value)
    assert model_dir in message and "in use" in message and str(os.getpid()) in message
    after = _checksums(model_dir)
    del after[".lock"]
    assert after == before


def test_second_cli_job_into_live_model_dir_exits_2(tmp_path):
    model_dir = str(tmp_path / "run")
    before = _previous_run(model_dir)
    with fileio.RunLock(model_dir):
        result = _cli(model_dir, ["train.max_steps = 1"])
    line = _assert_exit_2(result, model_dir, "in use")
    assert f"pid {os.getpid()}" in line
    after = _checksums(model_dir)
    del after[".lock"]
    assert after == before


def test_lock_of_a_sigkilled_job_is_not_stale(tmp_path):
    model_dir = str(tmp_path / "run")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from mobilenetv4 import fileio; "
            f"fileio.RunLock({model_dir!r}).acquire(); print('held', flush=True); "
            "time.sleep(600)",
        ],
        cwd=REPO,
        env=ENV,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(fileio.RunLocked):  # live: refused
            fileio.RunLock(model_dir).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    results = trainer.train(model_dir, data=random_array_data(n=16, size=16), **TINY)
    assert results["step"] == 2
    assert open(os.path.join(model_dir, ".lock")).read().strip() == str(os.getpid())


def test_lock_is_released_after_a_run_and_after_a_failure(tmp_path):
    model_dir = str(tmp_path / "run")
    trainer.train(model_dir, data=random_array_data(n=16, size=16), **TINY)
    fileio.RunLock(model_dir).acquire().release()  # free again
    with pytest.raises(UserError):
        trainer.train(model_dir, data=random_array_data(n=4, size=16), **TINY)
    fileio.RunLock(model_dir).acquire().release()


# ------------------------------------------------------------- model_dir
def test_model_dir_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "run"
    path.write_text("not a directory\n")
    with pytest.raises(UserError) as info:
        trainer.train(str(path), data=random_array_data(n=16, size=16), **TINY)
    assert "is a file" in _one_line(info.value) and str(path) in _one_line(info.value)
    assert path.read_text() == "not a directory\n"


def test_model_dir_under_a_file_is_refused(tmp_path):
    (tmp_path / "plain").write_text("x")
    with pytest.raises(UserError, match="cannot create --model_dir"):
        trainer.train(
            str(tmp_path / "plain" / "run"), data=random_array_data(n=16, size=16), **TINY
        )
    assert (tmp_path / "plain").read_text() == "x"


def test_model_dir_on_a_read_only_file_system_is_refused():
    with pytest.raises(UserError, match="/proc/mnv4_run"):
        trainer.train("/proc/mnv4_run", data=random_array_data(n=16, size=16), **TINY)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory modes")
def test_read_only_model_dir_is_refused(tmp_path):
    model_dir = tmp_path / "run"
    before = _previous_run(str(model_dir))
    os.chmod(model_dir, 0o555)
    try:
        with pytest.raises(UserError, match="permission denied"):
            trainer.train(str(model_dir), data=random_array_data(n=16, size=16), **TINY)
    finally:
        os.chmod(model_dir, 0o755)
    assert _checksums(str(model_dir)) == before


def test_cli_model_dir_that_is_a_file_exits_2(tmp_path):
    path = tmp_path / "run"
    path.write_text("keep me\n")
    _assert_exit_2(_cli(str(path)), str(path), "is a file")
    assert path.read_text() == "keep me\n"


# ------------------------------------------------------ hyper-parameters
BAD_TRAIN_ARGS = [
    ("batch_size", 0),
    ("batch_size", -8),
    ("batch_size", 8.5),
    ("epochs", 0),
    ("epochs", -1),
    ("epochs", float("inf")),
    ("peak_learning_rate", 0.0),
    ("peak_learning_rate", -1e-3),
    ("peak_learning_rate", float("nan")),
    ("peak_learning_rate", float("inf")),
    ("ema_decay", 1.0),
    ("ema_decay", 0.0),
    ("ema_decay", 1.5),
    ("weight_decay", -0.1),
    ("beta_1", 1.0),
    ("epsilon", 0.0),
    ("warmup_epochs", -1),
    ("gradient_clip_norm", 0.0),
    ("checkpoint_every_steps", 0),
    ("log_every_steps", 0),
    ("steps_per_loop", 0),
    ("max_steps", 0),
    ("strategy", "gpu"),
    ("mixed_precision", "int8"),
]


@pytest.mark.parametrize("name,value", BAD_TRAIN_ARGS)
def test_impossible_train_argument_is_refused_before_anything(tmp_path, name, value):
    model_dir = tmp_path / "run"
    args = dict(TINY, **{name: value})
    with pytest.raises(UserError) as info:
        trainer.train(str(model_dir), data=random_array_data(n=16, size=16), **args)
    assert f"train.{name}" in _one_line(info.value)
    assert not model_dir.exists()  # nothing was created


def test_warmup_longer_than_decay_is_refused(tmp_path):
    with pytest.raises(UserError, match="warmup_epochs"):
        trainer.train(
            str(tmp_path / "run"),
            data=random_array_data(n=16, size=16),
            **dict(TINY, warmup_epochs=1),
        )


BAD_MODEL_ARGS = [
    ("width_multiplier", float("nan")),
    ("width_multiplier", float("inf")),
    ("width_multiplier", 0.0),
    ("bn_epsilon", -1.0),
    ("bn_epsilon", 0.0),
    ("bn_momentum", 1.0),
    ("dropout", 1.0),
    ("stochastic_depth_rate", -0.1),
    ("l2", float("nan")),
    ("name", "conv_tiny"),
    ("attention_type", "flash"),
    ("padding", "valid"),
]


@pytest.mark.parametrize("name,value", BAD_MODEL_ARGS)
def test_impossible_model_argument_is_refused_before_anything(tmp_path, name, value):
    gin.bind_parameter(f"mobilenetv4_model.{name}", value)
    model_dir = tmp_path / "run"
    args = dict(TINY, model_fn=trainer.mobilenetv4_model)
    with pytest.raises(UserError) as info:
        trainer.train(str(model_dir), data=random_array_data(n=16, size=32), **args)
    assert f"mobilenetv4_model.{name}" in _one_line(info.value)
    assert not model_dir.exists()


BAD_PIPELINE_ARGS = [
    ("image_size", 16),
    ("image_size", 0),
    ("eval_crop_fraction", 0.0),
    ("eval_crop_fraction", 1.5),
    ("crop_area_range", (0.0, 1.0)),
    ("mix_prob", 2.0),
    ("label_offset", 0.5),
    ("num_classes", 0),
    ("crop", "random"),
]


@pytest.mark.parametrize("name,value", BAD_PIPELINE_ARGS)
def test_impossible_pipeline_argument_is_refused(name, value):
    with pytest.raises(UserError) as info:
        trainer.input_pipeline(**{name: value})
    assert f"input_pipeline.{name}" in _one_line(info.value)


def test_bad_label_smoothing_is_refused():
    with pytest.raises(UserError, match="label_smoothing"):
        trainer.categorical_crossentropy(label_smoothing=1.0)


def test_cli_impossible_hyper_parameter_exits_2(tmp_path):
    # One process: the in-process cases above cover the other arguments; this
    # checks the CLI turns them into one line and exit 2 (bn_epsilon=-1 used to
    # build a model that outputs NaN).
    model_dir = tmp_path / "run"
    before = _previous_run(str(model_dir))
    _assert_exit_2(
        _cli(str(model_dir), ["mobilenetv4_model.bn_epsilon = -1.0"]),
        "mobilenetv4_model.bn_epsilon",
        "-1.0",
    )
    assert _checksums(str(model_dir)) == before


def test_benchmark_bad_flag_is_one_line_exit_2():
    result = subprocess.run(
        [sys.executable, "-m", "experiments.benchmark_train", "--batch_size=0"],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = _assert_exit_2(result, "batch_size")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert line.startswith("error: flag --batch_size=0")
