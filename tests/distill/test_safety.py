"""Issue 16 for distillation: no teacher file runs code, the opt-in, the run lock, boundary
checks with one-line errors, and shard writes that a failure or a kill never leaves half done.

The hostile teachers hold a Keras Lambda whose stored bytecode creates a marker file; each is
first shown to be hostile (tf_keras' own loader creates the marker), then given to this package,
which must refuse it without the marker ever appearing.
"""

import glob
import hashlib
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
import types

import gin
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from experiments import trainer
from experiments.distill import generate as gen
from experiments.distill import shards
from experiments.distill import teacher as teacher_lib
from mobilenetv4 import build_record
from mobilenetv4.cli import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests"))
import cli_runner  # noqa: E402  tests/cli_runner.py: many CLIs forked from one TF-loaded interpreter

ENV = dict(
    os.environ,
    PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
    TF_CPP_MIN_LOG_LEVEL="3",
)


def _model(lambda_marker=None):
    layers = [keras.layers.Input((16, 16, 3))]
    if lambda_marker:

        def touch(x, marker=lambda_marker):
            import os  # pylint: disable=redefined-outer-name,reimported,import-outside-toplevel

            with open(marker, "w") as f:
                f.write(f"code from a model file ran in pid {os.getpid()}")
            return x

        layers.append(keras.layers.Lambda(touch))
    layers += [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)]
    keras.utils.set_random_seed(0)
    return keras.Sequential(layers)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """Hostile .h5 / .keras teachers (proven hostile), a pickle, and benign model files."""
    d = tmp_path_factory.mktemp("hostile")
    marker = str(d / "MARKER")
    files = types.SimpleNamespace(
        dir=str(d),
        marker=marker,
        h5=str(d / "teacher.h5"),
        keras=str(d / "teacher.keras"),
        pickle=str(d / "teacher.pkl"),
        benign_keras=str(d / "benign.keras"),
        benign_h5=str(d / "benign.h5"),
    )
    model = _model(marker)  # building runs the Lambda once: remove that marker
    model.save(files.h5)
    model.save(files.keras)
    os.remove(marker)
    keras.models.load_model(files.h5, compile=False)  # tf_keras' .h5 loader runs the bytecode
    assert os.path.exists(marker)
    os.remove(marker)
    keras.models.load_model(files.keras, compile=False, safe_mode=False)
    assert os.path.exists(marker)
    os.remove(marker)
    with open(files.pickle, "wb") as f:
        pickle.dump({"weights": [1.0]}, f)
    benign = _model()
    benign.save(files.benign_keras)
    benign.save(files.benign_h5)
    files.benign = benign
    return files


def _sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _tree(directory):
    return {
        p: _sha(p)
        for p in glob.glob(os.path.join(directory, "**"), recursive=True)
        if os.path.isfile(p)
    }


def _one_line(error):
    return str(error).splitlines()[0]  # what cli.fail prints after "error: "


@pytest.mark.parametrize(
    "kind, message",
    [
        ("h5", "full Keras model file"),
        ("keras", "full .keras model file"),
        ("pickle", "pickle-based"),
    ],
)
def test_model_files_are_refused_without_running_code(hostile, kind, message):
    path = getattr(hostile, kind)
    before = _tree(hostile.dir)
    with pytest.raises(UserError, match=message) as info:
        teacher_lib.load_teacher(path)
    assert path in _one_line(info.value)
    if kind != "pickle":  # the opt-in is named; pickles have none
        assert "trust_model_file" in _one_line(info.value)
    assert not os.path.exists(hostile.marker)
    assert _tree(hostile.dir) == before


def test_other_teacher_inputs_get_one_line_errors(tmp_path):
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(b"not hdf5 at all" * 10)
    plain = tmp_path / "plain.weights.h5"
    _model().save_weights(str(plain))  # weights without a build record
    saved = tmp_path / "saved_model"
    tf.saved_model.save(tf.Module(), str(saved))
    no_weights = tmp_path / "run"
    no_weights.mkdir()
    build_record.write_run(str(no_weights), build_record.make("conv_small", build={"classes": 10}))
    cases = [
        (str(tmp_path / "missing.h5"), "does not exist"),
        (str(corrupt), "not a readable HDF5 file"),
        (str(plain), "without a build record"),
        (str(saved), "is a SavedModel"),
        (str(tmp_path), "holds no build.json"),
        (str(no_weights), "has no final.weights.h5"),
    ]
    for path, message in cases:
        with pytest.raises(UserError, match=message) as info:
            teacher_lib.load_teacher(path)
        assert path in _one_line(info.value)


def test_trusted_model_files_load_only_in_safe_mode(hostile, tmp_path):
    gin.clear_config()
    try:
        gin.parse_config("load_teacher.trust_model_file = True")  # the documented opt-in
        images = np.random.RandomState(0).uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
        for path in (hostile.benign_keras, hostile.benign_h5):
            loaded = teacher_lib.load_teacher(path)
            np.testing.assert_allclose(loaded(images), hostile.benign(images), rtol=1e-5, atol=1e-6)
        with pytest.raises(UserError, match="safe mode"):  # a Lambda stays refused in a .keras
            teacher_lib.load_teacher(hostile.keras)
        assert not os.path.exists(hostile.marker)
    finally:
        gin.clear_config()
    with pytest.raises(UserError, match="trust_model_file"):  # off again without the binding
        teacher_lib.load_teacher(hostile.benign_keras)


def test_run_directory_and_registered_teacher_rebuild_the_model(tmp_path):
    """The hand-off from the trainer: MODEL_DIR (build.json + final.weights.h5) of a teacher
    trained as resized_model rebuilds that wrap; a record-less .h5 loads by registered name."""
    model = teacher_lib.resized_model(10, 16, model_fn=trainer.mobilenetv4_model, input_size=32)
    model.set_weights([w + 0.01 * np.float32(i % 3) for i, w in enumerate(model.get_weights())])
    run_dir = str(tmp_path / "teacher_run")
    os.makedirs(run_dir)
    data = types.SimpleNamespace(image_size=16, spec="sklearn_digits", eval_crop_fraction=1.0)
    artifacts = trainer.RunArtifacts(run_dir, True, trainer.run_build_record(model, data, False))
    artifacts.write_start()
    artifacts.write_weights(model, None)
    images = np.random.RandomState(1).uniform(-1, 1, (3, 16, 16, 3)).astype(np.float32)
    loaded = teacher_lib.load_teacher(run_dir, image_size=(16, 16), details=True)
    assert loaded.preprocessing == "imagenet" and run_dir in loaded.source
    np.testing.assert_allclose(loaded.model(images), model(images), rtol=1e-4, atol=1e-5)

    inner = model.layers[-1]  # conv_small at 32 px, saved without a record
    plain = str(tmp_path / "plain.weights.h5")
    inner.save_weights(plain)
    again = teacher_lib.registered_teacher(
        name="conv_small", weights=plain, classes=10, input_size=32
    )
    big = tf.image.resize(images, (32, 32))
    np.testing.assert_allclose(again(big), inner(big), rtol=1e-4, atol=1e-5)
    recorded = os.path.join(run_dir, "final.weights.h5")
    with pytest.raises(UserError, match="'conv_small', not 'conv_medium'"):
        teacher_lib.registered_teacher(name="conv_medium", weights=recorded)


def test_generate_refuses_bad_values_before_any_work(tmp_path, tiny, teacher_model):
    out = str(tmp_path / "out")
    base = dict(
        datasets=tiny.specs(replicas=1),
        teacher=teacher_model,
        output_dir=out,
        classes=tiny.classes,
        image_size=tiny.size,
        num_shards=2,
        batch_size=8,
    )
    cases = [
        (dict(num_workers=0), "num_workers must be an integer of at least 1"),
        (dict(worker_index=2, num_workers=2), "worker_index 2 is outside"),
        (dict(worker_index=-1), "worker_index -1 is outside"),
        (dict(top_k=-1), "top_k must be"),
        (dict(top_k=10), "top_k must be"),
        (dict(classes=1), "classes must be"),
        (dict(num_shards=0), "num_shards must be"),
        (dict(jpeg_quality=101), "jpeg_quality"),
        (dict(batch_size=0), "batch_size"),
        (dict(temperature=float("nan")), "temperature"),
        (dict(temperature=0.0), "temperature"),
        (dict(image_size=(16, 0)), "image_size"),
        (dict(teacher_output="softmax"), "teacher_output"),
    ]
    for change, message in cases:
        with pytest.raises(UserError, match=message) as info:
            gen.generate(**{**base, **change})
        assert message in _one_line(info.value)
    assert not os.path.exists(out)  # refused before anything was created


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda s: gen.DistillDataset("d/1", s, "mixup", 1), "names the shard files"),
        (lambda s: gen.DistillDataset("d1", s, "cutout", 1), "unknown augmentation"),
        (lambda s: gen.DistillDataset("d1", s, "mixup", 0), "replicas"),
        (
            lambda s: gen.DistillDataset("d1", s, "mixup", 1, mixup_alpha=float("inf")),
            "mixup_alpha",
        ),
        (
            lambda s: gen.DistillDataset("d1", s, "mixup", 1, crop_area_range=(0.5, 1.5)),
            "crop_area",
        ),
        (
            lambda s: gen.Selection(None, threshold=1.5),
            r"threshold must be a probability in \[0, 1\]",
        ),
        (lambda s: gen.Selection(None, threshold=-0.1), "threshold must be a probability"),
        (lambda s: gen.Selection(None, per_class=0), "per_class"),
    ],
)
def test_dataset_and_selection_values_are_checked(source_spec, make, message):
    with pytest.raises(UserError, match=message):
        make(source_spec)


def test_failed_shard_write_leaves_the_previous_shard_and_no_partial_file(tmp_path):
    meta = {
        "num_shards": 1,
        "image_size": [16, 16],
        "label_format": {"classes": 10, "top_k": 0, "prob_dtype": "float16"},
    }
    path = str(tmp_path / shards.shard_name("d1", 0, 1))
    shards.write_shard(path, [b"old-1", b"old-2"], meta)
    before = _tree(str(tmp_path))

    def failing():
        yield b"new-1"
        yield b"new-2"
        raise RuntimeError("teacher crashed mid-shard")

    with pytest.raises(RuntimeError, match="mid-shard"):
        shards.write_shard(path, failing(), meta)
    assert _tree(str(tmp_path)) == before  # old shard and sidecar intact, no temporary left
    assert shards.is_complete(path)
    os.remove(path[: -len(".tfrecord")] + ".json")
    os.remove(path)
    with pytest.raises(RuntimeError):
        shards.write_shard(path, failing(), meta)
    assert os.listdir(tmp_path) == []  # nothing under the shard's name


def test_killed_shard_write_leaves_no_partial_shard(tmp_path):
    path = str(tmp_path / shards.shard_name("d1", 0, 1))
    started = str(tmp_path / "started")
    script = textwrap.dedent(f"""
      import os, time
      from experiments.distill import shards
      def records():
        for i in range(100000):
          if i == 50:
            open({started!r}, "w").close()
          if i >= 50:
            time.sleep(0.01)
          yield b"x" * 1000
      shards.write_shard({path!r}, records(), {{"num_shards": 1}})
      """)
    proc = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, env=ENV, stderr=subprocess.PIPE
    )
    deadline = time.time() + 180
    while not os.path.exists(started):
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.time() < deadline, "the writer never started"
        time.sleep(0.05)
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = sorted(os.listdir(tmp_path))
    assert os.path.basename(path) not in left and not shards.is_complete(path)
    temporaries = [f for f in left if f.startswith(".tmp-")]
    assert len(temporaries) == 1 and temporaries[0].endswith(os.path.basename(path))
    removed = shards.remove_stale_temporaries(str(tmp_path), [os.path.basename(path)])
    assert [os.path.basename(r) for r in removed] == temporaries
    assert sorted(os.listdir(tmp_path)) == ["started"]


def _gin_file(tmp_path, name, teacher, out, source_spec):
    config = str(tmp_path / f"{name}.gin")
    with open(config, "w") as f:
        f.write(
            textwrap.dedent(f"""
        generate.datasets = [@d1/DistillDataset()]
        d1/DistillDataset.name = 'd1'
        d1/DistillDataset.source = '{source_spec}'
        d1/DistillDataset.augmentation = 'mixup'
        d1/DistillDataset.replicas = 1
        generate.teacher = '{teacher}'
        generate.output_dir = '{out}'
        generate.classes = 10
        generate.image_size = (16, 16)
        generate.num_shards = 2
        generate.batch_size = 8
        """)
        )
    return config


def test_cli_refusals_exit_2_with_one_line_and_touch_nothing(
    tmp_path, hostile, source_spec, teacher_file
):
    """`python -m experiments.distill.generate`: hostile teachers (the marker never appears), a
    second live run into a locked directory, and bad values; each exit 2, one `error:` line, the
    files already in the output directory unchanged, no shard written."""
    cases = []  # (label, output dir, argv, what the error line must contain)
    for kind in ("h5", "keras"):
        out = tmp_path / f"out_{kind}"
        out.mkdir()
        (out / "notes.txt").write_text("a file that was here before")
        teacher = getattr(hostile, kind)
        cases.append(
            (
                f"hostile .{kind}",
                out,
                [f"--gin_file={_gin_file(tmp_path, kind, teacher, out, source_spec)}"],
                [teacher, "refused", "trust_model_file"],
            )
        )
    locked = tmp_path / "out_locked"
    cases.append(
        (
            "locked",
            locked,
            [f"--gin_file={_gin_file(tmp_path, 'locked', teacher_file, locked, source_spec)}"],
            [f"output_dir {locked} is in use", f"pid {os.getpid()}"],
        )
    )
    for i, (args, message) in enumerate(
        [
            (["--num_workers=0"], "num_workers"),
            (["--worker_index=2", "--num_workers=2"], "worker_index 2 is outside"),
            (["--gin_param=generate.top_k = -3"], "top_k must be"),
            (["--gin_param=d1/DistillDataset.replicas = 0"], "replicas must be"),
        ]
    ):
        out = tmp_path / f"out_bad{i}"
        cases.append(
            (
                f"bad value {args}",
                out,
                [
                    f"--gin_file={_gin_file(tmp_path, f'bad{i}', teacher_file, out, source_spec)}",
                    *args,
                ],
                [message],
            )
        )
    before = {label: _tree(str(out)) for label, out, _, _ in cases}
    with gen._lock(str(locked), 0, 1):  # pylint: disable=protected-access  # a live first run
        results = cli_runner.run_all(
            [("-m", "experiments.distill.generate", *argv) for _, _, argv, _ in cases],
            cwd=ROOT,
            env=ENV,
            timeout=600,
        )
    problems = []
    for (label, out, argv, wanted), result in zip(cases, results):
        lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        if not cli_runner.is_one_line_user_error(result):
            problems.append(f"{label}: {cli_runner.describe(result, argv)}")
        elif not all(w in lines[0] for w in wanted):
            problems.append(f"{label}: {lines[0]!r} lacks {wanted}")
        after = {p: h for p, h in _tree(str(out)).items() if "/.locks/" not in p}
        if after != before[label]:
            problems.append(f"{label}: files changed: {sorted(set(after) ^ set(before[label]))}")
    assert not os.path.exists(hostile.marker), "code from a teacher file ran"
    assert not problems, "\n".join(problems)


def test_resume_refuses_finished_shards_of_other_settings(tmp_path, tiny, teacher_model):
    out = str(tmp_path / "out")
    args = dict(
        datasets=tiny.specs(replicas=1)[1:],
        teacher=teacher_model,
        output_dir=out,
        classes=tiny.classes,
        image_size=tiny.size,
        num_shards=2,
        batch_size=8,
    )
    assert len(gen.generate(**args)) == 2
    before = _tree(out)
    assert gen.generate(**args) == []  # same settings: everything finished, nothing rewritten
    for change, message in [
        (dict(seed=1), "with seed=0, this run asks for 1"),
        (dict(jpeg_quality=90), "jpeg_quality=95"),
        (dict(top_k=3), "label_format"),
    ]:
        with pytest.raises(UserError, match=message):
            gen.generate(**{**args, **change})
    assert _tree(out) == before
