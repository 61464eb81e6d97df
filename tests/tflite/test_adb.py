"""The --adb path against a fake adb that replays recorded benchmark_model output (no device)."""

import json
import os

import pytest

from mobilenetv4 import cli
from tflite import ToolError, adb, benchmark

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


def test_parse_inference_avg_plain_and_exponent():
    assert adb.parse_inference_avg_ms("Inference (avg): 2415.3\n") == pytest.approx(2.4153)
    assert adb.parse_inference_avg_ms(
        "Warmup (avg): 9, Inference (avg): 1.23456e+06"
    ) == pytest.approx(1234.56)
    assert adb.parse_inference_avg_ms("Inference (avg): 5E+2") == pytest.approx(0.5)
    with pytest.raises(ToolError, match="no 'Inference \\(avg\\)' line"):
        adb.parse_inference_avg_ms("ERROR: Benchmarking failed.")


def test_parse_sysfs_formats():
    assert adb.parse_max_freqs("cpu0 1803000\ncpu7 2802000\ngarbage\n") == {0: 1803000, 7: 2802000}
    assert adb.parse_present("0-3,6\n") == {0, 1, 2, 3, 6}


def test_cli_runs_five_pinned_runs_and_reports_median(fake_adb, tmp_path, monkeypatch, capsys):
    adb_path, log = fake_adb
    monkeypatch.setenv("FAKE_ADB_AVGS", "2.4e+03,2500,2350.5,2.45E3,2410")
    binary, model = tmp_path / "benchmark_model", tmp_path / "m.tflite"
    binary.write_bytes(b"\x7fELF")
    model.write_bytes(b"\0\0\0\0TFL3")
    result = benchmark.main(
        [
            str(model),
            "--adb",
            "--adb_path",
            adb_path,
            "--serial",
            "emulator-5554",
            "--delegate",
            "gpu",
            "--benchmark_binary",
            str(binary),
            "--json",
        ]
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert all(c[:2] == ["-s", "emulator-5554"] for c in calls)
    pushes = [c[3:] for c in calls if c[2] == "push"]
    assert [str(binary), "/data/local/tmp/benchmark_model"] in pushes
    assert [str(model), "/data/local/tmp/m.tflite"] in pushes
    runs = [c[3] for c in calls if c[2] == "shell" and c[3].startswith("taskset")]
    assert len(runs) == 5
    # cpu6 and cpu7 share the top frequency; the highest index wins -> mask 0x80.
    assert runs[0].startswith(
        "taskset 80 /data/local/tmp/benchmark_model --graph=/data/local/tmp/m.tflite"
    )
    for flag in (
        "--num_runs=1000",
        "--min_secs=0",
        "--num_threads=1",
        "--use_gpu=true",
        "--warmup_runs=20",
    ):  # the protocol flags' defaults, as in every tool
        assert flag in runs[0].split()
    (m,) = result["models"]
    assert m["means_ms"] == pytest.approx([2.4, 2.5, 2.3505, 2.45, 2.41])
    assert m["median_ms"] == pytest.approx(2.41) and m["core"] == 7
    printed = json.loads(capsys.readouterr().out)
    assert printed["models"][0]["median_ms"] == pytest.approx(2.41)


@pytest.mark.parametrize(
    "delegate,flags",
    [
        ("cpu", ["--use_xnnpack=true"]),
        ("hexagon", ["--use_hexagon=true", "--hexagon_lib_path=/data/local/tmp"]),
        ("nnapi", ["--use_nnapi=true"]),
        ("gpu", ["--use_gpu=true"]),
        (
            "npu",
            [
                "--use_npu=true",
                "--require_full_delegation=true",
                "--dispatch_library_dir=/data/local/tmp",
            ],
        ),
    ],
)
def test_delegate_flags(delegate, flags, tmp_path):
    runner = adb.AdbBenchmark(binary=__file__, adb=__file__, delegate=delegate)
    command = runner.shell_command(
        "/data/local/tmp/bm", "/data/local/tmp/m.tflite", adb.cpu.CoreChoice(4, 2253000, "test")
    )
    assert command.startswith("taskset 10 /data/local/tmp/bm ")
    assert all(f in command.split() for f in flags)


def test_unavailable_delegate_is_a_clear_error(fake_adb, tmp_path, monkeypatch, capsys):
    adb_path, _ = fake_adb
    monkeypatch.setenv(
        "FAKE_ADB_REPLAY", os.path.join(FIXTURES, "benchmark_model_gpu_unavailable.txt")
    )
    (tmp_path / "bm").write_bytes(b"x")
    (tmp_path / "m.tflite").write_bytes(b"x")
    with pytest.raises(SystemExit) as e:
        cli.run(
            benchmark.main,
            [
                str(tmp_path / "m.tflite"),
                "--adb",
                "--adb_path",
                adb_path,
                "--delegate",
                "gpu",
                "--benchmark_binary",
                str(tmp_path / "bm"),
            ],
        )
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "gpu delegate is unavailable" in err and "Failed to apply GPU delegate" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_missing_device_and_missing_adb(fake_adb, tmp_path):
    adb_path, _ = fake_adb
    (tmp_path / "m.tflite").write_bytes(b"x")
    runner = adb.AdbBenchmark(binary=__file__, adb=adb_path, serial="NOPE")
    with pytest.raises(ToolError, match="adb cannot reach device 'NOPE'"):
        runner.run(str(tmp_path / "m.tflite"))
    with pytest.raises(ToolError, match="adb not found"):
        adb.AdbBenchmark(binary=__file__, adb="/nonexistent/adb")
    with pytest.raises(ToolError, match="unknown delegate"):
        adb.AdbBenchmark(binary=__file__, adb=adb_path, delegate="tpu")


def test_benchmark_failure_output_is_one_line():
    with pytest.raises(ToolError) as e:
        adb.parse_inference_avg_ms("line one\nERROR: Benchmarking failed.\n")
    assert "\n" not in str(e.value) and "line one | ERROR: Benchmarking failed." in str(e.value)


def test_adb_flag_combinations_are_one_line_errors(capsys):
    for args, message in [
        (["m.tflite", "--delegate", "gpu"], "apply to --adb runs only"),
        (["m.tflite", "--adb", "--core", "2"], "--core applies to local runs"),
        (["m.tflite", "--adb", "--delegate", "tpu"], "invalid choice"),
    ]:
        with pytest.raises(SystemExit) as e:
            cli.run(benchmark.main, args)
        err = capsys.readouterr().err
        assert e.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(
    "accelerator,flag",
    [
        ("gpu", "--use_gpu=true"),
        ("npu", "--use_npu=true"),
        ("hexagon", "--use_hexagon=true"),
        ("cpu", "--use_xnnpack=true"),
    ],
)
@pytest.mark.parametrize("spelling", ["--accelerator", "--delegate"])
def test_accelerator_is_passed_to_benchmark_model(accelerator, flag, spelling, fake_adb, tmp_path):
    """`--adb --accelerator X` (or `--delegate X`) runs benchmark_model on the device with X's
    flags (fake adb)."""
    adb_path, log = fake_adb
    binary, model, dispatch = (tmp_path / n for n in ("bm", "m.tflite", "libLiteRtDispatch_Qc.so"))
    for f in (binary, model, dispatch):
        f.write_bytes(b"\0\0\0\0TFL3")
    result = benchmark.main(
        [str(model), "--adb", "--adb_path", adb_path, spelling, accelerator]
        + ["--benchmark_binary", str(binary), "--repeats", "2", "--push", str(dispatch)]
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    runs = [c[1] for c in calls if c[0] == "shell" and c[1].startswith("taskset")]
    assert len(runs) == 2 and all(flag in r.split() for r in runs), runs
    others = {f for fl in adb.DELEGATE_FLAGS.values() for f in fl} - set(
        adb.DELEGATE_FLAGS[accelerator]
    )
    assert not any(f in runs[0].split() for f in others)
    assert ["push", str(dispatch), "/data/local/tmp/libLiteRtDispatch_Qc.so"] in calls
    assert result["protocol"]["delegate"] == accelerator


def test_accelerator_flag_errors_are_one_line(capsys):
    for args, message in [
        (["m.tflite", "--accelerator", "tpu"], "unknown accelerator 'tpu'"),
        (["m.tflite", "--accelerator", "hexagon"], "add --adb"),
        (["m.tflite", "--adb", "--accelerator", "gpu", "--delegate", "nnapi"], "not both"),
    ]:
        with pytest.raises(SystemExit) as e:
            cli.run(benchmark.main, args)
        err = capsys.readouterr().err
        assert e.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_nas_latency_table_times_its_rows_on_the_device(fake_adb, tmp_path, monkeypatch):
    """`experiments.nas.latency_table --adb`: each row's graph is pushed and timed by
    benchmark_model (5 pinned repeats, median), and the table records the Android device."""
    from experiments.nas import latency_table
    from mobilenetv4 import search_space

    adb_path, log = fake_adb
    monkeypatch.setenv("FAKE_ADB_AVGS", "100,300,200,400,500")  # us; median 0.3 ms per row
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF")
    rows = dict(
        list(latency_table.space_rows(search_space.get("quickstart", "coarse"), 32, 10).items())[:2]
    )
    args = latency_table.parse_args(
        [
            "--table",
            str(tmp_path / "t.json"),
            "--adb",
            "--adb_path",
            adb_path,
            "--serial",
            "emulator-5554",
            "--benchmark_binary",
            str(binary),
            "--num_runs",
            "50",
        ]
    )
    device = "android:emulator-5554:cpu"
    table = latency_table.measure(
        args.table,
        rows,
        input_size=32,
        classes=10,
        device=device,
        protocol=adb.device_protocol(args),
        device_runner=adb.runner(args, log=lambda *_: None),
    )
    assert table["entries"] == {key: pytest.approx(0.3) for key in rows}
    assert latency_table.load(args.table, input_size=32, device=device)["device"] == device
    with pytest.raises(cli.UserError, match="device"):
        latency_table.load(args.table, input_size=32, device=latency_table.host_device())
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    pushed = [c[4] for c in calls if c[2] == "push" and c[3].endswith(".tflite")]
    assert len(pushed) == 2 and all(p.startswith("/data/local/tmp/row") for p in pushed)
    runs = [c[3] for c in calls if c[2] == "shell" and c[3].startswith("taskset")]
    assert len(runs) == 10 and all("--num_runs=50" in r.split() for r in runs)
