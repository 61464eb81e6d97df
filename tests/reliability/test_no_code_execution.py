"""No file a user passes in runs code when read (issue 16 harm 1; docs/CONTRACT.md section 4).

Hostile files (tests/reliability/conftest.py: a tf_keras Lambda model as .h5 / .keras, a pickle as
.pkl / torch-style .pt / object .npy and .npz / fake .safetensors, a run directory and an image
folder made of them) go into every place the package reads a file, through the command line as a
user would type it and through the Python API:

  python -m tflite.export --weights / --checkpoint / --calibration
  python -m mobilenetv4.convert --timm
  python -m mobilenetv4.weights.parity DIR
  mobilenetv4.create_model(weights=...)
  python -m experiments.distill.generate (generate.teacher, trained_model.weights,
                                          registered_teacher.weights)
  python -m experiments.train (input_pipeline.dataset pointing at them)

Every file's payload writes its own marker file; the assertion is that no marker ever appears.
Where a file can only be a model or a pickle (never plain weights), the command must refuse it
with exit 2 and one `error:` line naming the file; where the reader legitimately treats it as
weights only (a record-carrying .h5, a run directory), any clean outcome (exit 0 or 2, no
traceback) is fine.
"""

import json
import os

import cli_runner  # tests/cli_runner.py, registered by tests/reliability/conftest.py
import pytest
from hostile_files import make_hostile, write_digits_tfrecord

REFUSE = "refuse"  # exit 2, one error line naming the file
CLEAN = (0, 2)  # no traceback (the file is read as weights only, or refused)
CHECKED = (0, 1, 2)  # a checking tool may also report its check as failed
TIMEOUT = 400


def _markers(paths):
    return sorted(os.listdir(paths["markers"]))


def _check(cases, results, paths):
    """cases: [(label, argv, expectation, file)]; returns the problems."""
    problems = []
    for (label, argv, expect, path), result in zip(cases, results):
        what = f"{label}: {cli_runner.describe(result, argv)}"
        if expect == REFUSE:
            if not cli_runner.is_one_line_user_error(result):
                problems.append(f"{what} (expected exit 2 and one 'error:' line)")
            elif os.path.basename(path) not in result.stderr:
                problems.append(f"{what} (the error does not name {os.path.basename(path)})")
        elif result.code not in expect or "Traceback" in result.stderr:
            problems.append(
                f"{what} (expected exit {' or '.join(map(str, expect))} without a traceback)"
            )
    ran = _markers(paths)
    if ran:
        problems.insert(0, f"CODE RAN: markers {ran} were written")
    return problems


def test_hostile_files_do_run_code_when_loaded_naively(tmp_path):
    """The fixtures are real threats: the usual loaders execute every one of them."""
    paths = make_hostile(tmp_path)
    code = f"""
import pickle, zipfile, numpy as np, tf_keras as keras
p = {json.dumps({k: v for k, v in paths.items()})}
keras.models.load_model(p["model.h5"], compile=False)
keras.models.load_model(p["model_record.h5"], compile=False)
keras.models.load_model(p["model.keras"], compile=False, safe_mode=False)
with open(p["evil.pkl"], "rb") as f:
  pickle.load(f)
pickle.loads(zipfile.ZipFile(p["evil.pt"]).read("archive/data.pkl"))
np.load(p["evil.npy"], allow_pickle=True)
np.load(p["evil.npz"], allow_pickle=True)["a"]
with open(p["pickle.safetensors"], "rb") as f:
  pickle.load(f)
"""
    result = cli_runner.run_all([("-c", code)], cwd=str(tmp_path), timeout=TIMEOUT)[0]
    assert result.code == 0, cli_runner.describe(result)
    assert _markers(paths) == sorted(
        f + ".ran"
        for f in (
            "model.h5",
            "model_record.h5",
            "model.keras",
            "evil.pkl",
            "evil.pt",
            "evil.npy",
            "evil.npz",
            "pickle.safetensors",
        )
    )


def test_tflite_export_reads_no_code(tmp_path):
    p = make_hostile(tmp_path / "hostile")
    out = str(tmp_path / "out.tflite")
    base = ("-m", "tflite.export", "--fp32", "--output", out, "--overwrite")
    named = base + ("--model", "conv_small@32", "--classes", "10")
    int8 = (
        "-m",
        "tflite.export",
        "--int8",
        "--model",
        "conv_small@32",
        "--classes",
        "10",
        "--output",
        out,
        "--overwrite",
        "--num_calibration",
        "4",
        "--num_heldout",
        "2",
    )
    cases = [
        ("--weights full-model .h5", named + ("--weights", p["model.h5"]), CLEAN, p["model.h5"]),
        (
            "--weights full-model .h5 with a record",
            base + ("--weights", p["model_record.h5"]),
            CLEAN,
            p["model_record.h5"],
        ),
        ("--weights .keras", named + ("--weights", p["model.keras"]), REFUSE, p["model.keras"]),
        ("--weights .pkl", named + ("--weights", p["evil.pkl"]), REFUSE, p["evil.pkl"]),
        ("--weights .pt", named + ("--weights", p["evil.pt"]), REFUSE, p["evil.pt"]),
        ("--weights .npy", named + ("--weights", p["evil.npy"]), REFUSE, p["evil.npy"]),
        ("--checkpoint run dir", base + ("--checkpoint", p["run"]), CLEAN, p["run"]),
        ("--calibration .npy", int8 + ("--calibration", p["evil.npy"]), REFUSE, p["evil.npy"]),
        ("--calibration .pkl", int8 + ("--calibration", p["evil.pkl"]), REFUSE, p["evil.pkl"]),
        (
            "--calibration folder of pickles",
            int8 + ("--calibration", p["images"]),
            CLEAN,
            p["images"],
        ),
        (
            "--calibration folder: spec",
            int8 + ("--calibration", "folder:" + p["images"]),
            CLEAN,
            p["images"],
        ),
    ]
    results = cli_runner.run_all([c[1] for c in cases], cwd=str(tmp_path), timeout=TIMEOUT)
    problems = _check(cases, results, p)
    assert not problems, "\n".join(problems)


def test_convert_reads_no_code(tmp_path):
    p = make_hostile(tmp_path / "hostile")
    cases = []
    for i, name in enumerate(
        (
            "evil.pkl",
            "evil.pt",
            "evil.npy",
            "evil.npz",
            "pickle.safetensors",
            "model.h5",
            "model_record.h5",
            "model.keras",
        )
    ):
        argv = (
            "-m",
            "mobilenetv4.convert",
            "--model",
            "conv_small",
            "--timm",
            p[name],
            "--output",
            str(tmp_path / f"out{i}.h5"),
        )
        cases.append((f"--timm {name}", argv, REFUSE, p[name]))
    # parity reads fixture cases (.json + .npz + .safetensors) from a folder
    case_dir = tmp_path / "cases"
    case_dir.mkdir()
    fixtures = os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights", "fixtures"
    )
    for suffix in (".json", ".safetensors"):
        with open(os.path.join(fixtures, "conv_small_w0125" + suffix), "rb") as f:
            (case_dir / ("conv_small_w0125" + suffix)).write_bytes(f.read())
    with open(p["evil.npz"], "rb") as f:
        (case_dir / "conv_small_w0125.npz").write_bytes(f.read())
    cases.append(
        (
            "parity DIR with an object .npz",
            ("-m", "mobilenetv4.weights.parity", str(case_dir)),
            CHECKED,
            str(case_dir),
        )
    )
    results = cli_runner.run_all([c[1] for c in cases], cwd=str(tmp_path), timeout=TIMEOUT)
    problems = _check(cases, results, p)
    assert not problems, "\n".join(problems)


def test_create_model_reads_no_code(tmp_path):
    p = make_hostile(tmp_path / "hostile")
    names = [
        "model.h5",
        "model_record.h5",
        "model.keras",
        "evil.pkl",
        "evil.pt",
        "evil.npy",
        "evil.npz",
        "pickle.safetensors",
    ]
    code = f"""
import json, mobilenetv4
p = {json.dumps(p)}
out = {{}}
for name in {names!r}:
  try:
    mobilenetv4.create_model("conv_small", weights=p[name], input_shape=(32, 32, 3), classes=10)
    out[name] = "loaded"
  except Exception as e:
    out[name] = type(e).__name__ + ": " + (str(e).splitlines() or [""])[0][:200]
print("RESULT " + json.dumps(out))
"""
    result = cli_runner.run_all([("-c", code)], cwd=str(tmp_path), timeout=TIMEOUT)[0]
    assert result.code == 0, cli_runner.describe(result)
    line = [x for x in result.stdout.splitlines() if x.startswith("RESULT ")]
    assert line, result.stdout[-2000:]
    outcome = json.loads(line[-1][len("RESULT ") :])
    assert not _markers(p), f"CODE RAN: {_markers(p)}; outcomes {outcome}"
    # Pickles and full model files are never weights: each must be refused, not loaded.
    loaded = [name for name, what in outcome.items() if what == "loaded"]
    assert not loaded, f"create_model accepted {loaded} as weights: {outcome}"


def _generate_gin(tmp_path, source):
    shards = tmp_path / "shards"
    return [
        "--gin_file=gin_configs/distill_generate_quickstart.gin",
        "--gin_param=generate.datasets = [@d1/DistillDataset()]",
        f"--gin_param=d1/DistillDataset.source = 'tfrecord:{source}'",
        "--gin_param=d1/DistillDataset.replicas = 1",
        "--gin_param=generate.num_shards = 1",
        "--gin_param=generate.batch_size = 8",
        f"--gin_param=generate.output_dir = '{shards}'",
    ]


def test_distill_generate_teachers_run_no_code(tmp_path):
    p = make_hostile(tmp_path / "hostile")
    source = write_digits_tfrecord(tmp_path / "labelled.tfrecord", n=16)
    gin = _generate_gin(tmp_path, source)
    gen = ("-m", "experiments.distill.generate")
    fake = p["pickle.safetensors"]
    trained = (
        "--gin_param=generate.teacher = @teacher/trained_model()",
        "--gin_param=teacher/trained_model.model_fn = @teacher/mobilenetv4_model",
        "--gin_param=teacher/trained_model.num_classes = 10",
        "--gin_param=teacher/trained_model.image_size = 32",
        "--gin_param=teacher/mobilenetv4_model.name = 'conv_small'",
    )

    def teacher(value, expect, path):
        return (
            f"generate.teacher = {value}",
            gen + tuple(gin) + (f"--gin_param=generate.teacher = {value}",),
            expect,
            path,
        )

    cases = [
        teacher(f"'{p['model.h5']}'", REFUSE, p["model.h5"]),
        teacher(f"'{p['model_record.h5']}'", CLEAN, p["model_record.h5"]),
        teacher(f"'{p['model.keras']}'", REFUSE, p["model.keras"]),
        teacher(f"'{p['evil.pkl']}'", REFUSE, p["evil.pkl"]),
        teacher(f"'{p['evil.npy']}'", REFUSE, p["evil.npy"]),
        teacher(f"'{p['run']}'", CLEAN, p["run"]),
        (
            "teacher/trained_model.weights = full-model .h5",
            gen
            + tuple(gin)
            + trained
            + (f"--gin_param=teacher/trained_model.weights = '{p['model.h5']}'",),
            CLEAN,
            p["model.h5"],
        ),
        (
            "teacher/trained_model.weights = .pt",
            gen
            + tuple(gin)
            + trained
            + (f"--gin_param=teacher/trained_model.weights = '{p['evil.pt']}'",),
            REFUSE,
            p["evil.pt"],
        ),
        (
            "registered_teacher.weights = .pkl",
            gen
            + tuple(gin)
            + (
                "--gin_param=generate.teacher = @registered_teacher()",
                "--gin_param=registered_teacher.name = 'conv_small@32'",
                f"--gin_param=registered_teacher.weights = '{p['evil.pkl']}'",
            ),
            REFUSE,
            p["evil.pkl"],
        ),
        (
            "registered_teacher.weights = fake .safetensors",
            gen
            + tuple(gin)
            + (
                "--gin_param=generate.teacher = @registered_teacher()",
                "--gin_param=registered_teacher.name = 'conv_small@32'",
                f"--gin_param=registered_teacher.weights = '{fake}'",
            ),
            REFUSE,
            p["pickle.safetensors"],
        ),
    ]
    # One output_dir per case: the runner starts two at a time, and two generations into one folder
    # are refused by its lock (the refusal would hide what this test looks for).
    cases = [
        (what, argv + (f"--gin_param=generate.output_dir = '{tmp_path / f'shards{i}'}'",), *rest)
        for i, (what, argv, *rest) in enumerate(cases)
    ]
    results = cli_runner.run_all([c[1] for c in cases], cwd=cli_runner.REPO, timeout=TIMEOUT)
    problems = _check(cases, results, p)
    assert not problems, "\n".join(problems)


def test_trainer_data_runs_no_code(tmp_path):
    p = make_hostile(tmp_path / "hostile")
    train = (
        "-m",
        "experiments.train",
        "--gin_file=gin_configs/quickstart.gin",
        "--gin_param=train.max_steps = 1",
        "--gin_param=train.batch_size = 8",
    )
    cases = []
    for i, (label, spec, path) in enumerate(
        [
            (
                "tfrecord glob of a pickle",
                f"tfrecord:{p['evil.pkl']};num_classes=10",
                p["evil.pkl"],
            ),
            ("tfrecord glob of an .npy", f"tfrecord:{p['evil.npy']};num_classes=10", p["evil.npy"]),
            (
                "tfrecord glob of a model .h5",
                f"tfrecord:{p['model.h5']};num_classes=10",
                p["model.h5"],
            ),
            ("image folder of pickles", f"folder:{p['images']}", p["images"]),
        ]
    ):
        cases.append(
            (
                f"input_pipeline.dataset = {label}",
                train
                + (
                    f"--model_dir={tmp_path / f'run{i}'}",
                    f"--gin_param=input_pipeline.dataset = '{spec}'",
                    "--gin_param=input_pipeline.eval_dataset = 'sklearn_digits'",
                ),
                CLEAN,
                path,
            )
        )
    results = cli_runner.run_all([c[1] for c in cases], cwd=cli_runner.REPO, timeout=TIMEOUT)
    problems = _check(cases, results, p)
    # Data files are never models: none of these may train to exit 0.
    problems += [
        f"{label}: trained on it (exit 0)" for (label, *_), r in zip(cases, results) if r.code == 0
    ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", ["evil.pkl", "model.h5"])
def test_load_teacher_api_reads_no_code(tmp_path, name):
    """The Python API behind generate.teacher, in this process: a refusal, and no marker."""
    from experiments.distill import teacher as teacher_lib
    from mobilenetv4.cli import UserError

    p = make_hostile(tmp_path / "hostile")
    with pytest.raises(UserError, match=os.path.basename(name)):
        teacher_lib.load_teacher(p[name], image_size=(32, 32))
    assert not _markers(p)
