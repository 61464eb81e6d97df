"""Acceptance (issue 12): README's full path, train -> export INT8 -> benchmark, run as a user would.

The commands are read from README.md's "The full path" section and run unchanged except for the
run directory (a temporary one instead of /tmp/mnv4_quickstart) and the quick-trial flag that the
README itself shows for the training command. The export must find everything in the run's build
record (no --model / --classes / --input_size), calibrate on the training data, and report the
held-out top-1 of the .tflite within 1 point of the Keras model's.
"""

import json
import os
import re
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
README_DIR = "/tmp/mnv4_quickstart"


def readme_path_section():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    section = text.split("## The full path", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    commands = [shlex.split(c) for c in block.replace("\\\n", " ").splitlines() if c.strip()]
    quick = re.search(
        r"add `(--gin_(?:file|param)=[^`]+)` to the first command", " ".join(section.split())
    ).group(1)
    return commands, shlex.split(quick)[0], section


def test_readme_shows_the_path_without_model_flags():
    commands, quick, _ = readme_path_section()
    assert [c[:3] for c in commands] == [
        ["python", "-m", "experiments.train"],
        ["python", "-m", "tflite.export"],
        ["python", "-m", "tflite.benchmark"],
    ]
    export = commands[1]
    for flag in ("--model", "--classes", "--input_size", "--preprocessing"):
        assert flag not in export  # the build record carries them
    assert "--checkpoint" in export and "--calibration" in export and quick.startswith("--gin_")


@pytest.mark.slow  # 8-epoch training, one INT8 conversion, one benchmark: ~6 min on 2 loaded cores
def test_readme_train_export_benchmark(tmp_path):
    commands, quick, _ = readme_path_section()
    run_dir = str(tmp_path / "mnv4_quickstart")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    outputs = []
    for i, command in enumerate(commands):
        argv = [sys.executable] + [a.replace(README_DIR, run_dir) for a in command[1:]]
        if i == 0:
            argv.append(quick)
        proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
        assert proc.returncode == 0, (
            f"{' '.join(argv)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
        outputs.append(proc.stdout)
    tflite_path = next(a for a in commands[1] if a.endswith(".tflite")).replace(README_DIR, run_dir)
    report = json.load(open(tflite_path[: -len(".tflite")] + ".report.json"))
    fid = report["fidelity"]
    assert report["weights"] == "ema" and report["graph"]["precision"] == "INT8"
    assert report["input_size"] == [32, 32] and report["graph"]["output"]["shape"] == [1, 10]
    assert fid["images"] == 360  # the whole held-out split of sklearn_digits
    # The quick trial measured 91.7% (a model near 60% flips many borderline digits under INT8).
    assert fid["keras_top1"] > 0.8, fid
    assert abs(fid["tflite_top1"] - fid["keras_top1"]) <= 0.01, fid
    # The export's Keras figure is the trainer's own held-out evaluation (same EMA weights, same
    # eval transform).
    metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
    assert abs(metrics["eval_top1"] - fid["keras_top1"]) <= 0.01, (metrics["eval_top1"], fid)
    assert "held-out top-1" in outputs[1]
    assert os.path.basename(tflite_path) in outputs[2] or "ms" in outputs[2]
