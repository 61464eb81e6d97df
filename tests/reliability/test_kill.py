"""SIGKILL at random moments never leaves a broken file (issue 16 harm 2; docs/CONTRACT.md 4).

For each of `tflite.export`, `mobilenetv4.convert`, `experiments.distill.generate` and
`experiments.train`: one complete run first writes good outputs (the "previous complete files",
checksummed), then the same kind of run over them (with --overwrite / resuming) is SIGKILLed at
three seeded random moments within the first run's duration, and after each kill every output path
must hold either nothing, the previous complete file (same checksum), or a new complete file
(loadable: .tflite by the LiteRT interpreter, .h5 by h5py, .json parses, shards pass
`experiments.distill.shards.load_manifest(verify="full")`, checkpoints by tf.train). Files named
`.tmp-*` (what a killed atomic write leaves) are not outputs; after the kills one more run must
finish (exit 0) over whatever they left - the readers ignore or clean the temporaries.

The commands run forked from one interpreter with TensorFlow imported (tests/cli_runner.py), so a
kill lands in the tool's own work rather than in `import tensorflow`.
"""

import json
import os
import random

import cli_runner  # tests/cli_runner.py, registered by tests/reliability/conftest.py
import pytest
from hostile_files import write_digits_tfrecord

KILLS = 3
SEED = 16
TIMEOUT = 600
FIXTURE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "weights",
    "fixtures",
    "conv_small_w0125.safetensors",
)
TMP_PREFIX = ".tmp-"


def _files(directory):
    """{relative path: sha256} of every file under directory that is not a temporary."""
    out = {}
    for root, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if not d.startswith(TMP_PREFIX)]
        for f in files:
            if f.startswith(TMP_PREFIX) or f == ".lock":
                continue
            path = os.path.join(root, f)
            out[os.path.relpath(path, directory)] = cli_runner.sha256(path)
    return out


def _temporaries(directory):
    return sorted(
        os.path.relpath(os.path.join(root, f), directory)
        for root, dirs, files in os.walk(directory)
        for f in files + dirs
        if f.startswith(TMP_PREFIX)
    )


def _complete(path):
    """None when `path` is a complete file of its kind, else what is wrong."""
    name = os.path.basename(path)
    try:
        if os.path.getsize(path) == 0:
            return "empty file"
        if name.endswith(".tflite"):
            from ai_edge_litert.interpreter import Interpreter

            Interpreter(model_path=path).allocate_tensors()
        elif name.endswith(".h5"):
            import h5py

            with h5py.File(path, "r") as f:
                if not list(f.keys()) and not list(f.attrs.keys()):
                    return "HDF5 file without content"
        elif name.endswith(".json"):
            with open(path, encoding="utf-8") as f:
                json.load(f)
        elif name.endswith((".md", ".csv", ".gin", ".txt")):
            with open(path, encoding="utf-8") as f:
                if not f.read().strip():
                    return "empty text"
    except Exception as e:  # noqa: BLE001 - any failure to load is the finding
        return f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
    return None


def _check_after_kill(directory, before, label, ignore=()):
    """Every output is the previous file (same checksum) or a complete new one."""
    problems = []
    for rel, digest in _files(directory).items():
        if any(rel.startswith(prefix) for prefix in ignore):
            continue
        if before.get(rel) == digest:
            continue
        why = _complete(os.path.join(directory, rel))
        if why:
            problems.append(
                f"{label}: {rel} is neither the previous file nor a complete new one ({why})"
            )
    return problems


def _kill_times(seconds, rng):
    """KILLS moments spread over a run of about `seconds`: one in each third, seeded."""
    return [
        round(seconds * rng.uniform((k + 0.1) / KILLS, (k + 0.95) / KILLS), 2) for k in range(KILLS)
    ]


def _kill_series(argv, cwd, directory, before_fn, check_fn, first_seconds, seed):
    """Runs `argv` KILLS times, each SIGKILLed at a seeded moment, checking after each."""
    rng = random.Random(seed)
    times = _kill_times(first_seconds, rng)
    problems = []
    for t in times:
        before = before_fn()
        result = cli_runner.run_all([argv], cwd=cwd, timeout=TIMEOUT, kill_after=[t], workers=1)[0]
        label = f"killed at {t:.2f} s (exit {result.code})"
        if result.code not in (-9, 0):
            problems.append(
                f"{label}: the run failed before the kill: {cli_runner.describe(result)}"
            )
        problems += check_fn(before, label)
    return times, problems


def _finish(argv, cwd):
    result = cli_runner.run_all([argv], cwd=cwd, timeout=TIMEOUT, workers=1)[0]
    assert result.code == 0, "after the kills the same command must finish: " + cli_runner.describe(
        result, argv
    )
    return result


@pytest.mark.slow  # about a minute per tool on 2 idle cores: four complete runs and three kills
def test_kill_tflite_export(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    first = (
        "-m",
        "tflite.export",
        "--model",
        "conv_small@32",
        "--classes",
        "10",
        "--fp32",
        "--output",
        str(out / "m.tflite"),
    )
    again = (
        "-m",
        "tflite.export",
        "--model",
        "conv_small@48",
        "--classes",
        "10",
        "--fp32",
        "--output",
        str(out / "m.tflite"),
        "--overwrite",
    )
    r = cli_runner.run_all([first], cwd=str(tmp_path), timeout=TIMEOUT, workers=1)[0]
    assert r.code == 0, cli_runner.describe(r, first)
    good = _files(out)
    assert "m.tflite" in good and not _complete(str(out / "m.tflite")), good
    times, problems = _kill_series(
        again,
        str(tmp_path),
        str(out),
        lambda: _files(out),
        lambda before, label: _check_after_kill(str(out), before, label),
        r.seconds,
        SEED,
    )
    assert not problems, f"kill times {times}:\n" + "\n".join(problems)
    _finish(again, str(tmp_path))
    final = _files(out)
    assert final["m.tflite"] != good["m.tflite"], "the finishing run did not replace the model"
    assert not [rel for rel in final if _complete(str(out / rel))]


@pytest.mark.slow  # about half a minute on 2 idle cores
def test_kill_mobilenetv4_convert(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    argv = (
        "-m",
        "mobilenetv4.convert",
        "--model",
        "conv_small",
        "--timm",
        FIXTURE,
        "--width_multiplier",
        "0.125",
        "--classes",
        "10",
        "--output",
        str(out / "c.h5"),
    )
    r = cli_runner.run_all([argv], cwd=str(tmp_path), timeout=TIMEOUT, workers=1)[0]
    assert r.code == 0, cli_runner.describe(r, argv)
    good = _files(out)
    assert list(good) == ["c.h5"] and not _complete(str(out / "c.h5")), good
    again = argv + ("--overwrite",)
    times, problems = _kill_series(
        again,
        str(tmp_path),
        str(out),
        lambda: _files(out),
        lambda before, label: _check_after_kill(str(out), before, label),
        r.seconds,
        SEED + 1,
    )
    assert not problems, f"kill times {times}:\n" + "\n".join(problems)
    _finish(again, str(tmp_path))
    assert not _complete(str(out / "c.h5"))
    assert list(_files(out)) == ["c.h5"], _files(out)


def _teacher_weights(path):
    """A conv_small (width 0.25, 10 classes, 32 px) weights .h5 with its build record."""
    import mobilenetv4
    from mobilenetv4 import build_record

    model = mobilenetv4.create_model(
        "conv_small", input_shape=(32, 32, 3), classes=10, width_multiplier=0.25
    )
    model.save_weights(path)
    build_record.write_h5(
        path,
        build_record.make(
            "conv_small",
            build={"classes": 10, "width_multiplier": 0.25},
            input_size=(32, 32),
            preprocessing="imagenet",
            weights="raw",
        ),
    )
    return os.fspath(path)


@pytest.mark.slow  # about a minute on 2 idle cores
def test_kill_distill_generate(tmp_path):
    from experiments.distill import shards

    teacher = _teacher_weights(tmp_path / "teacher.weights.h5")
    source = write_digits_tfrecord(tmp_path / "labelled.tfrecord", n=64)
    out = tmp_path / "shards"
    argv = (
        "-m",
        "experiments.distill.generate",
        "--gin_file=gin_configs/distill_generate_quickstart.gin",
        "--gin_param=generate.datasets = [@d1/DistillDataset()]",
        f"--gin_param=d1/DistillDataset.source = 'tfrecord:{source}'",
        "--gin_param=d1/DistillDataset.replicas = 4",
        "--gin_param=generate.num_shards = 2",
        "--gin_param=generate.batch_size = 32",
        f"--gin_param=generate.teacher = '{teacher}'",
        f"--gin_param=generate.output_dir = '{out}'",
    )
    r = cli_runner.run_all([argv], cwd=cli_runner.REPO, timeout=TIMEOUT, workers=1)[0]
    assert r.code == 0, cli_runner.describe(r, argv)
    paths, _ = shards.load_manifest(str(out), "d1", verify="full")
    assert len(paths) == 2
    kept = {os.path.basename(p): cli_runner.sha256(p) for p in paths}
    redo = sorted(kept)[1]  # remove the second shard: each run over the folder rebuilds it

    def reset():
        for suffix in (".tfrecord", ".json"):
            path = os.path.join(out, redo[: -len(".tfrecord")] + suffix)
            if os.path.exists(path):
                os.unlink(path)
        return _files(out)

    def check(before, label):
        problems = _check_after_kill(str(out), before, label, ignore=(".locks",))
        first = min(kept)
        if cli_runner.sha256(os.path.join(out, first)) != kept[first]:
            problems.append(f"{label}: the finished shard {first} changed")
        try:
            done, _ = shards.load_manifest(str(out), "d1", verify="full", allow_partial=True)
        except Exception as e:  # noqa: BLE001
            problems.append(f"{label}: load_manifest fails: {e}")
            return problems
        if any(os.path.basename(p).startswith(TMP_PREFIX) for p in done):
            problems.append(f"{label}: load_manifest lists a temporary file: {done}")
        return problems

    times, problems = _kill_series(
        argv, cli_runner.REPO, str(out), reset, check, r.seconds, SEED + 2
    )
    assert not problems, f"kill times {times}:\n" + "\n".join(problems)
    _finish(argv, cli_runner.REPO)
    paths, _ = shards.load_manifest(str(out), "d1", verify="full")
    assert sorted(os.path.basename(p) for p in paths) == sorted(kept)
    assert not [t for t in _temporaries(out) if redo[: -len(".tfrecord")] in t], _temporaries(out)


@pytest.mark.slow  # about two minutes on 2 idle cores: a short quickstart, three kills, a resume
def test_kill_experiments_train(tmp_path):
    import tensorflow as tf

    model_dir = tmp_path / "run"

    def argv(steps):
        return (
            "-m",
            "experiments.train",
            "--gin_file=gin_configs/quickstart.gin",
            f"--model_dir={model_dir}",
            f"--gin_param=train.max_steps = {steps}",
            "--gin_param=train.batch_size = 16",
            "--gin_param=train.checkpoint_every_steps = 2",
            "--gin_param=train.log_every_steps = 1",
            "--gin_param=mobilenetv4_model.width_multiplier = 0.25",
        )

    r = cli_runner.run_all([argv(2)], cwd=cli_runner.REPO, timeout=TIMEOUT, workers=1)[0]
    assert r.code == 0, cli_runner.describe(r, argv(2))
    good = _files(model_dir)
    for name in ("build.json", "final.weights.h5", "metrics.json"):
        assert name in good and not _complete(str(model_dir / name)), (name, sorted(good))

    def check(before, label):
        # TensorBoard event files are appended by TensorFlow's summary writer (a torn last record is
        # skipped by its readers), so they are not whole-file outputs.
        problems = _check_after_kill(
            str(model_dir), before, label, ignore=("train/", "eval/", "events.out")
        )
        problems = [p for p in problems if "events.out.tfevents" not in p]
        latest = tf.train.latest_checkpoint(str(model_dir / "checkpoints"))
        if latest is None:
            problems.append(f"{label}: no checkpoint is listed any more")
        else:
            try:
                tf.train.load_checkpoint(latest).get_variable_to_shape_map()
            except Exception as e:  # noqa: BLE001
                problems.append(f"{label}: the newest checkpoint {latest} does not load: {e}")
        return problems

    # Each killed run resumes from the newest checkpoint and trains on towards 12 steps.
    times, problems = _kill_series(
        argv(12),
        cli_runner.REPO,
        str(model_dir),
        lambda: _files(model_dir),
        check,
        r.seconds,
        SEED + 3,
    )
    assert not problems, f"kill times {times}:\n" + "\n".join(problems)
    _finish(argv(12), cli_runner.REPO)
    with open(model_dir / "metrics.json") as f:
        metrics = json.load(f)
    assert metrics and "NaN" not in json.dumps(metrics), metrics
