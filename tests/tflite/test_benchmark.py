"""The Appendix B CLI on a tiny model (in a subprocess: pinning changes the process affinity)."""

import hashlib
import json
import os
import statistics
import subprocess
import sys

import pytest

from mobilenetv4 import cli
from tflite import benchmark

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "tflite.benchmark", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_protocol_json_and_table(tiny_models, tmp_path):
    md, csv_path, json_path = (str(tmp_path / f"table.{ext}") for ext in ("md", "csv", "json"))
    proc = run_cli(
        tiny_models["int8"],
        tiny_models["fp32"],
        "--num_runs",
        "50",
        "--repeats",
        "3",
        "--json",
        "--output",
        f"{md},{csv_path},{json_path}",
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert json.load(open(json_path)) == result
    protocol = result["protocol"]
    assert (protocol["num_runs"], protocol["repeats"], protocol["num_threads"]) == (50, 3, 1)
    assert protocol["xnnpack"] and protocol["interleaved"]
    assert protocol["core"] in os.sched_getaffinity(0) and protocol["core_reason"]
    for m in result["models"]:
        assert len(m["means_ms"]) == 3 and all(x > 0 for x in m["means_ms"])
        assert m["median_ms"] == pytest.approx(statistics.median(m["means_ms"]))
    assert "pinned to cpu" in proc.stderr and "repeat 3/3" in proc.stderr
    text = open(md).read()
    assert "| Model | Precision | Params (M) | MACs (G) |" in text and "| int8 | INT8 |" in text
    assert "Appendix B" in text
    assert open(csv_path).read().splitlines()[2].startswith("fp32,FP32,")
    # Existing outputs are refused (before anything is timed) and left as they were.
    digest = hashlib.sha256(open(md, "rb").read()).hexdigest()
    proc = run_cli(tiny_models["fp32"], "--num_runs", "2", "--repeats", "1", "--output", md)
    assert proc.returncode == 2 and "already exists; pass --overwrite" in proc.stderr
    assert hashlib.sha256(open(md, "rb").read()).hexdigest() == digest
    # The documented --table PREFIX is a deprecated alias of --output PREFIX.md,PREFIX.csv.
    prefix = str(tmp_path / "old")
    proc = run_cli(tiny_models["fp32"], "--num_runs", "2", "--repeats", "1", "--table", prefix)
    assert proc.returncode == 0, proc.stderr
    assert "warning: --table is deprecated" in proc.stderr
    assert os.path.getsize(prefix + ".md") > 0 and os.path.getsize(prefix + ".csv") > 0
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]


def test_bad_inputs_are_clear_errors(tmp_path, tiny_models, capsys):
    affinity = os.sched_getaffinity(0)
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(b"this is not a flatbuffer at all")
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(open(tiny_models["fp32"], "rb").read()[:2000])
    cases = [
        ([str(tmp_path / "missing.tflite")], "no such model file"),
        ([str(corrupt)], "not a TFLite flatbuffer"),
        ([str(truncated)], "LiteRT cannot load"),
        ([tiny_models["fp32"], "--output", "/nonexistent_dir/t.md"], "does not exist"),
        ([tiny_models["fp32"], "--output", str(tmp_path / "t.txt")], "unknown format"),
        # an output that is the run's own input: refused whatever --overwrite says
        (
            [tiny_models["fp32"], "--overwrite", "--json", tiny_models["fp32"]],
            "also an input of this run",
        ),
        ([tiny_models["fp32"], "--core", "4096"], "may only use cores"),
        ([tiny_models["fp32"], "--core", "fast"], "expected 'fastest', 'none' or a CPU index"),
        ([tiny_models["fp32"], "--core", "1.5"], "expected 'fastest', 'none' or a CPU index"),
        ([tiny_models["fp32"], "--num_threads", "0"], "must be at least 1"),
        ([tiny_models["fp32"], "--num_runs", "-3"], "must be at least 1"),
        ([tiny_models["fp32"], "--repeats", "many"], "expected an integer"),
    ]
    # In process (quicker than a subprocess each); a run that fails after pinning gets the
    # process's affinity back.
    for args, message in cases:
        if "--num_runs" not in args and "--repeats" not in args:
            args = args + ["--num_runs", "2", "--repeats", "1"]
        try:
            with pytest.raises(SystemExit) as e:
                cli.run(benchmark.main, args)
        finally:
            os.sched_setaffinity(0, affinity)
        err = capsys.readouterr().err
        lines = [
            line for line in err.splitlines() if line.strip() and not line.startswith("warning: ")
        ]
        assert e.value.code == 2, (args, err)
        assert message in err and "Traceback" not in err, (args, err)
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, err)


def test_flag_spellings_and_lists(capsys):
    args = benchmark.parse_args(
        [
            "a.tflite",
            "b.tflite",
            "--output",
            "t.md,t.csv",
            "--adb",
            "--push",
            "x.so,y.so",
            "--warmup_runs",
            "0",
        ]
    )
    assert (args.models, args.output, args.push, args.warmup_runs) == (
        ["a.tflite", "b.tflite"],
        ["t.md", "t.csv"],
        ["x.so", "y.so"],
        0,
    )
    old = benchmark.parse_args(["a.tflite", "--adb", "--push", "x.so", "y.so", "--json", "r.json"])
    err = capsys.readouterr().err
    assert old.push == ["x.so", "y.so"] and old.json_file == "r.json" and old.json is None
    assert "space-separated values for --push are deprecated" in err
    assert "--json PATH is deprecated" in err
