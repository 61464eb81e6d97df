"""The Appendix B CLI on a tiny model (in a subprocess: pinning changes the process affinity)."""
import json
import os
import statistics
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "tflite.benchmark", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_protocol_json_and_table(tiny_models, tmp_path):
    prefix = str(tmp_path / "table")
    proc = run_cli(tiny_models["int8"], tiny_models["fp32"], "--num_runs", "50", "--repeats", "3",
                   "--json", "--table", prefix)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    protocol = result["protocol"]
    assert (protocol["num_runs"], protocol["repeats"], protocol["num_threads"]) == (50, 3, 1)
    assert protocol["xnnpack"] and protocol["interleaved"]
    assert protocol["core"] in os.sched_getaffinity(0) and protocol["core_reason"]
    for m in result["models"]:
        assert len(m["means_ms"]) == 3 and all(x > 0 for x in m["means_ms"])
        assert m["median_ms"] == pytest.approx(statistics.median(m["means_ms"]))
    assert "pinned to cpu" in proc.stderr and "repeat 3/3" in proc.stderr
    md = open(prefix + ".md").read()
    assert "| Model | Precision | Params (M) | MACs (G) |" in md and "| int8 | INT8 |" in md
    assert "Appendix B" in md
    assert open(prefix + ".csv").read().splitlines()[2].startswith("fp32,FP32,")


def test_bad_inputs_are_clear_errors(tmp_path, tiny_models):
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(b"this is not a flatbuffer at all")
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(open(tiny_models["fp32"], "rb").read()[:2000])
    cases = [([str(tmp_path / "missing.tflite")], "no such model file"),
             ([str(corrupt)], "not a TFLite flatbuffer"),
             ([str(truncated)], "LiteRT cannot load"),
             ([tiny_models["fp32"], "--table", "/nonexistent_dir/t"], "does not exist"),
             ([tiny_models["fp32"], "--core", "4096"], "may only use cores")]
    for args, message in cases:
        proc = run_cli(*args, "--num_runs", "2", "--repeats", "1")
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr)
