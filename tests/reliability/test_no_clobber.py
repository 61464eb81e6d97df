"""No command overwrites a file it was not told to (issue 16 harm 3; docs/CONTRACT.md 3 and 4).

For every CLI that writes a named output: an existing output is refused without --overwrite, and an
output that is also an input of the same run is refused even with --overwrite. A refusal is exit 2
with one `error:` line, and every file in the case's folder keeps its checksum (nothing new
appears either: no report, no half-written file).

  tflite.export --output (and the reports it writes beside it), --weights as the output
  tflite.benchmark --output / --json PATH / --table PREFIX, a model input as the output
  tflite.roofline_latency --output
  tflite.roundtrip / tflite.ablations / tflite.compare_model_garden --output_dir
  mobilenetv4.summary --output / --csv
  mobilenetv4.convert --output, --timm as the output
  mobilenetv4.roofline --output_dir, --latencies as one of its outputs
  experiments.distill.label_stats --output

All commands run in one batch (tests/cli_runner.py: forked from one interpreter that imported
TensorFlow, two at a time).
"""

import os
import shutil

import cli_runner  # tests/cli_runner.py, registered by tests/reliability/conftest.py

FIXTURE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "weights",
    "fixtures",
    "conv_small_w0125.safetensors",
)


def _tiny_tflite():
    """The bytes of a tiny float .tflite (conv + dense, 8x8 input)."""
    import tensorflow as tf
    import tf_keras as keras

    inputs = keras.Input((8, 8, 3), batch_size=1)
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def _weights_h5(path):
    """conv_small weights (width 0.25, 10 classes, 32 px) with a build record."""
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


def _snapshot(directory):
    out = {}
    for root, _, files in os.walk(directory):
        for f in files:
            path = os.path.join(root, f)
            out[os.path.relpath(path, directory)] = (os.path.islink(path), cli_runner.sha256(path))
    return out


def _cases(tmp_path):
    """[(label, argv, folder)]: each folder holds the files that must stay as they are."""
    from tflite import ablations, compare_model_garden, roundtrip

    tflite_bytes = _tiny_tflite()
    cases = []

    def folder(name, files):
        d = tmp_path / name
        d.mkdir()
        for rel, data in files.items():
            (d / rel).write_bytes(data)
        return d

    # tflite.export
    d = folder("export_existing", {"m.tflite": tflite_bytes})
    cases.append(
        (
            "tflite.export --output an existing file",
            (
                "-m",
                "tflite.export",
                "--model",
                "conv_small@32",
                "--fp32",
                "--output",
                d / "m.tflite",
            ),
            d,
        )
    )
    d = folder("export_report", {"m.report.json": b'{"keep": true}\n'})
    cases.append(
        (
            "tflite.export: its report beside --output exists",
            (
                "-m",
                "tflite.export",
                "--model",
                "conv_small@32",
                "--fp32",
                "--output",
                d / "m.tflite",
            ),
            d,
        )
    )
    d = folder("export_weights", {})
    _weights_h5(d / "w.h5")
    cases.append(
        (
            "tflite.export --output = --weights, with --overwrite",
            (
                "-m",
                "tflite.export",
                "--weights",
                d / "w.h5",
                "--fp32",
                "--output",
                d / "w.h5",
                "--overwrite",
            ),
            d,
        )
    )
    d = folder("export_weights_link", {})
    _weights_h5(d / "w.h5")
    os.symlink("w.h5", d / "link.tflite")
    cases.append(
        (
            "tflite.export --output a symlink to --weights, with --overwrite",
            (
                "-m",
                "tflite.export",
                "--weights",
                d / "w.h5",
                "--fp32",
                "--output",
                d / "link.tflite",
                "--overwrite",
            ),
            d,
        )
    )

    # tflite.benchmark
    for i, (label, files, flags) in enumerate(
        [
            (
                "--output an existing .json",
                {"r.json": b"{}\n"},
                lambda d: ("--output", d / "r.json"),
            ),
            (
                "--output FILE,FILE with the second existing",
                {"r.csv": b"a,b\n"},
                lambda d: ("--output", f"{d / 'r.md'},{d / 'r.csv'}"),
            ),
            (
                "deprecated --json PATH existing",
                {"r.json": b"{}\n"},
                lambda d: ("--json", d / "r.json"),
            ),
            (
                "deprecated --table PREFIX with PREFIX.md existing",
                {"t.md": b"# t\n"},
                lambda d: ("--table", d / "t"),
            ),
        ]
    ):
        d = folder(f"benchmark_{i}", {"m.tflite": tflite_bytes, **files})
        cases.append(
            (
                f"tflite.benchmark {label}",
                (
                    "-m",
                    "tflite.benchmark",
                    d / "m.tflite",
                    "--num_runs",
                    "1",
                    "--repeats",
                    "1",
                    "--warmup_runs",
                    "0",
                )
                + flags(d),
                d,
            )
        )
    d = folder("benchmark_input", {"m.tflite": tflite_bytes})
    os.symlink("m.tflite", d / "link.json")
    cases.append(
        (
            "tflite.benchmark --output a symlink to its model input, with --overwrite",
            (
                "-m",
                "tflite.benchmark",
                d / "m.tflite",
                "--num_runs",
                "1",
                "--repeats",
                "1",
                "--warmup_runs",
                "0",
                "--output",
                d / "link.json",
                "--overwrite",
            ),
            d,
        )
    )

    # tflite.roofline_latency, roundtrip, ablations, compare_model_garden
    d = folder("roofline_latency", {"lat.csv": b"model,latency_ms\n"})
    cases.append(
        (
            "tflite.roofline_latency --output an existing file",
            (
                "-m",
                "tflite.roofline_latency",
                "--models",
                "conv_small",
                "--output",
                d / "lat.csv",
                "--num_runs",
                "1",
                "--repeats",
                "1",
            ),
            d,
        )
    )
    d = folder("roundtrip", {})
    existing = roundtrip.output_path(str(d), "conv_small", 32, roundtrip.PRECISIONS[-1])
    with open(existing, "wb") as f:
        f.write(tflite_bytes)
    cases.append(
        (
            "tflite.roundtrip --output_dir holding one of its outputs",
            ("-m", "tflite.roundtrip", "--models", "conv_small", "--size", "32", "--output_dir", d),
            d,
        )
    )
    d = folder("ablations", {ablations.OUTPUTS[0]: b"# old\n"})
    cases.append(
        (
            "tflite.ablations --output_dir holding its report",
            ("-m", "tflite.ablations", "--output_dir", d, "--num_runs", "1", "--repeats", "1"),
            d,
        )
    )
    d = folder("compare", {compare_model_garden.OUTPUTS[1]: b"{}\n"})
    cases.append(
        (
            "tflite.compare_model_garden --output_dir holding its report",
            (
                "-m",
                "tflite.compare_model_garden",
                "--output_dir",
                d,
                "--num_runs",
                "1",
                "--repeats",
                "1",
            ),
            d,
        )
    )

    # mobilenetv4.summary / convert / roofline
    d = folder("summary", {"s.csv": b"old\n"})
    cases.append(
        (
            "mobilenetv4.summary --output an existing file",
            ("-m", "mobilenetv4.summary", "conv_small", "--output", d / "s.csv"),
            d,
        )
    )
    d = folder("summary_alias", {"s.csv": b"old\n"})
    cases.append(
        (
            "mobilenetv4.summary --csv (deprecated alias) an existing file",
            ("-m", "mobilenetv4.summary", "conv_small", "--csv", d / "s.csv"),
            d,
        )
    )
    d = folder("convert", {"c.h5": b"not really an h5, but existing\n"})
    cases.append(
        (
            "mobilenetv4.convert --output an existing file",
            (
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
                d / "c.h5",
            ),
            d,
        )
    )
    d = folder("convert_input", {})
    shutil.copy(FIXTURE, d / "w.safetensors")
    os.symlink("w.safetensors", d / "link.h5")
    cases.append(
        (
            "mobilenetv4.convert --output a symlink to --timm, with --overwrite",
            (
                "-m",
                "mobilenetv4.convert",
                "--model",
                "conv_small",
                "--timm",
                d / "w.safetensors",
                "--width_multiplier",
                "0.125",
                "--classes",
                "10",
                "--output",
                d / "link.h5",
                "--overwrite",
            ),
            d,
        )
    )
    d = folder("roofline", {"summary.csv": b"old\n"})
    cases.append(
        (
            "mobilenetv4.roofline --output_dir holding summary.csv",
            ("-m", "mobilenetv4.roofline", "--models", "conv_small", "--output_dir", d),
            d,
        )
    )
    d = folder("roofline_input", {"summary.csv": b"model,latency_ms\nconv_small,1.5\n"})
    cases.append(
        (
            "mobilenetv4.roofline --latencies = one of its outputs, with --overwrite",
            (
                "-m",
                "mobilenetv4.roofline",
                "--models",
                "conv_small",
                "--latencies",
                d / "summary.csv",
                "--output_dir",
                d,
                "--overwrite",
            ),
            d,
        )
    )

    # experiments.distill.label_stats
    d = folder("label_stats", {"stats.md": b"# old\n"})
    (d / "shards").mkdir()
    cases.append(
        (
            "experiments.distill.label_stats --output an existing file",
            (
                "-m",
                "experiments.distill.label_stats",
                f"--shards={d / 'shards'}",
                f"--output={d / 'stats.md'}",
            ),
            d,
        )
    )
    return cases


def test_existing_outputs_and_inputs_are_never_overwritten(tmp_path):
    cases = _cases(tmp_path)
    before = {label: _snapshot(d) for label, _, d in cases}
    results = cli_runner.run_all([argv for _, argv, _ in cases], cwd=str(tmp_path), timeout=400)
    problems = []
    for (label, argv, d), result in zip(cases, results):
        if not cli_runner.is_one_line_user_error(result):
            problems.append(
                f"{label}: expected exit 2 and one 'error:' line; " + cli_runner.describe(result)
            )
        else:
            error = next(x for x in cli_runner.error_lines(result.stderr) if x.startswith("error:"))
            if not any(os.path.basename(name) in error for name in before[label]):
                problems.append(f"{label}: the error does not name the file it protects: {error}")
        after = _snapshot(d)
        if after != before[label]:
            changed = sorted(
                k for k in set(after) | set(before[label]) if after.get(k) != before[label].get(k)
            )
            problems.append(f"{label}: files changed or appeared: {changed}")
    assert not problems, "\n".join(problems)
