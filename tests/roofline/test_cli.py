"""End to end: the CLI's files, MAC totals against the reference counts, the measurement tool."""

import csv
import os
import subprocess
import sys

import pytest
import tf_keras as keras

from mobilenetv4 import cli
from mobilenetv4.costs import layer_costs
from mobilenetv4.roofline import zoo
from mobilenetv4.roofline.__main__ import main
from mobilenetv4.roofline.analysis import roofline_ops

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# conv + dense + attention-matmul MACs counted on timm's models (timm 1.0's
# mobilenetv4_{conv,hybrid}_* at their default resolutions).
REFERENCE_GMACS = {
    "conv_small@224": 0.1860,
    "conv_medium@256": 1.0802,
    "hybrid_medium@256": 1.2712,
    "conv_large@384": 6.3762,
    "hybrid_large@384": 7.7119,
}


@pytest.mark.parametrize("spec", list(REFERENCE_GMACS))
def test_mac_totals_and_weight_bytes(spec):
    keras.backend.clear_session()
    model = zoo.resolve(spec).build()
    ops = roofline_ops(model, "fp16")
    gmacs = sum(op.macs for op in ops) / 1e9
    assert gmacs == pytest.approx(REFERENCE_GMACS[spec], rel=0.01)
    costs = layer_costs(model)
    # Weight bytes = params x 2 at fp16, op by op (BN folds into the conv before it).
    assert sum(op.weight_bytes for op in ops) == 2 * sum(c.params for c in costs)
    assert sum(op.macs for op in ops) == sum(c.macs for c in costs)


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_cli_writes_tables_figures_and_fit(tmp_path):
    lat = tmp_path / "lat.csv"
    lat.write_text(
        "model,resolution,latency_ms\nmobilenet_v1_025,64,0.40\n"
        "mobilenet_v2_035,64,0.90\nmobilenet_v1_050,64,0.70\n"
    )
    out = tmp_path / "out"
    assert (
        main(
            [
                "--models",
                "mobilenet_v1_025@64,mobilenet_v2_035@64",
                "--precision",
                "fp16",
                "--latencies",
                str(lat),
                "--rp_step",
                "1",
                "--per_model_plots",
                "--fig3_models",
                "mobilenet_v2_035@64",
                "--output_dir",
                str(out),
            ]
        )
        == 0
    )
    for name in (
        "sweep.csv",
        "summary.csv",
        "summary.md",
        "fig2_sweep.png",
        "fig3_op_cost.png",
        "fig6_fit.png",
        "fit.csv",
        "fit_curve.csv",
        "ops_mobilenet_v1_050_64.csv",
        "op_cost_mobilenet_v2_035_64.png",
    ):
        assert (out / name).stat().st_size > 0, name
    ops = _rows(out / "ops_mobilenet_v2_035_64.csv")
    sweep_rows = _rows(out / "sweep.csv")
    assert len(sweep_rows) == 501
    # RP 0 of the sweep is the MAC count; RP 500 is 500 x bytes for an all-memory-bound model.
    assert float(sweep_rows[0]["mobilenet_v2_035@64"]) == pytest.approx(
        sum(int(r["macs"]) for r in ops), rel=1e-5
    )
    assert float(sweep_rows[-1]["mobilenet_v2_035@64"]) == pytest.approx(
        sum(max(int(r["macs"]), 500 * int(r["bytes"])) for r in ops), rel=1e-5
    )
    fit = _rows(out / "fit.csv")
    assert [r["model"] for r in fit] == [
        "mobilenet_v1_025@64",
        "mobilenet_v2_035@64",
        "mobilenet_v1_050@64",
    ]
    assert "r_s-Roofline" in (out / "summary.md").read_text()


def run_main(args, capsys):
    """(exit code, stderr) of the CLI as `python -m` runs it."""
    with pytest.raises(SystemExit) as e:
        cli.run(main, args)
    return e.value.code, capsys.readouterr().err


def test_cli_errors_name_the_problem(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("net,time\nconv_small,3\n")
    for args, message in [
        (["--models", "conv_smal"], "unknown model 'conv_smal'"),
        (["--models", "conv_small", "--latencies", str(bad)], "needs a model column"),
        (["--models", "conv_small@big"], "bad resolution"),
        (["--models", "conv_small", "--rp_max", "nan"], "must be a finite number"),
        (["--models", "conv_small", "--rp_step", "inf"], "must be a finite number"),
        (["--models", "conv_small", "--rp_step", "0"], "must be greater than 0"),
        (["--models", "conv_small", "--rp_step", "1e-9"], "ridge points; at most"),
    ]:
        code, err = run_main(args + ["--output_dir", str(tmp_path / "out")], capsys)
        assert code == 2, args
        assert err.startswith("error: ") and message in err, (args, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()  # nothing written before the inputs were checked


def _lat_rows(path):
    rows = _rows(path)
    for r in rows:
        means = [float(x) for x in r["round_means_ms"].split()]
        assert len(means) == 2 and float(r["latency_ms"]) > 0
        assert min(means) <= float(r["latency_ms"]) <= max(means)
        assert int(r["runs_per_round"]) == 5
        assert r["attention_precision"] == "int8"  # no attention: every op quantized
    return rows


def test_measure_tool_and_its_deprecated_alias_write_latency_csv(tmp_path):
    # Subprocesses: the benchmark pins its process to one core.
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cache = tmp_path / "cache"
    out = tmp_path / "lat.csv"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tflite.roofline_latency",
            "--models",
            "mobilenet_v1_025@32",
            "--num_runs",
            "5",
            "--repeats",
            "2",
            "--warmup_runs",
            "1",
            "--cache_dir",
            str(cache),
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [r["model"] for r in _lat_rows(out)] == ["mobilenet_v1_025"]
    assert (cache / "mobilenet_v1_025_32_int8_standin.tflite").stat().st_size > 0
    assert all(r["weights"] == "stand-in" for r in _rows(out))
    # The old command and its old flag spellings still work for one release, via the new tool
    # (the cached conversion is reused, so this costs only the timing).
    old = tmp_path / "old.csv"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mobilenetv4.roofline.measure",
            "--models",
            "mobilenet_v1_025@32",
            "--runs",
            "5",
            "--repeats",
            "2",
            "--max-secs",
            "20",
            "--cache-dir",
            str(cache),
            "--out",
            str(old),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "use python -m tflite.roofline_latency" in proc.stderr
    for flag in ("--runs", "--max-secs", "--cache-dir", "--out"):
        assert f"warning: {flag} is deprecated" in proc.stderr, flag
    assert [r["model"] for r in _lat_rows(old)] == ["mobilenet_v1_025"]


def test_slow_models_get_fewer_runs_per_round():
    from tflite.roofline_latency import runs_tier

    assert runs_tier(0.004, 1000, 10.0) == 1000  # 4 s a round
    assert runs_tier(0.02, 1000, 10.0) == 300
    assert runs_tier(0.08, 1000, 10.0) == 100
    assert runs_tier(2.0, 1000, 10.0) == 30  # never fewer than the smallest tier
    assert runs_tier(0.001, 50, 10.0) == 50  # a smaller --runs is kept
