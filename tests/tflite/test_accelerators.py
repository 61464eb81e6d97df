"""LiteRT's accelerators on this machine: the GPU (software Vulkan, lavapipe) and the NPU path (AOT
compilation with Intel's OpenVINO plugin, run through its dispatch library on OpenVINO's CPU
backend), each checked against the CPU (XNNPACK) run on real images; the vendor errors, the EdgeTPU
prediction and the bad inputs. CI's set: conv_small at 64 px and the tiny attention model."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from mobilenetv4 import cli
from tflite import ToolError, accelerators, benchmark, edgetpu_precheck, npu

NO_VULKAN = accelerators.vulkan_missing()
needs_vulkan = pytest.mark.skipif(NO_VULKAN is not None, reason=f"GPU: {NO_VULKAN}")
try:
    npu.require_sdk("intel_openvino")
    NO_OPENVINO = None
except ToolError as e:
    NO_OPENVINO = str(e)
needs_openvino = pytest.mark.skipif(NO_OPENVINO is not None, reason=f"NPU: {NO_OPENVINO}")


@pytest.fixture(scope="module")
def conv_small(tmp_path_factory):
    """conv_small at 64 px with stand-in statistics, FP32 and INT8 (sklearn digits), + images."""
    from tflite import calibration, export, models

    out = tmp_path_factory.mktemp("conv_small")
    images = calibration.load("sklearn_digits", (64, 64), 16, 16, log=lambda *_: None)
    model = export.with_pixel_input(models.build("conv_small", (64, 64, 3)), "imagenet", (64, 64))
    models.stand_in_statistics(model, images.calibration)
    paths = {"images": images.heldout}
    for precision, io in [("fp32", "float"), ("int8", "int8")]:
        paths[precision] = str(out / f"cs64_{precision}.tflite")
        with open(paths[precision], "wb") as f:
            f.write(export.convert(model, precision, io, images.calibration))
    return paths


def run_cli(main, args, capsys):
    with pytest.raises(SystemExit) as e:
        cli.run(main, args)
    err = capsys.readouterr().err.strip()
    return e.value.code, err


# --- GPU ---------------------------------------------------------------------------------------


@needs_vulkan
def test_gpu_fp32_runs_whole_and_matches_cpu(conv_small):
    c = accelerators.isolated(
        "check", path=conv_small["fp32"], accelerator="gpu", images=conv_small["images"]
    )
    assert c["fully_accelerated"] and c["gpu_precision"] == "FP32"
    assert c["max_rel_diff"] < 1e-4 and c["top1_agreement"] == 1.0, c


@needs_vulkan
def test_export_check_gpu_step(conv_small, capsys):
    """`tflite.export --check gpu`'s step after the export: the check on real images, in the
    report; an FP32 model beyond 1e-4 relative marks the check failed (exit 1)."""
    import argparse

    args = argparse.Namespace(calibration=None, overwrite=False)
    report = accelerators.after_export(args, {"output": conv_small["fp32"]}, ("gpu", None))
    c = report["gpu_check"]
    assert c["fully_accelerated"] and c["images"] == 32 and c["max_rel_diff"] < 1e-4
    assert "check_failed" not in report and "GPU check of" in capsys.readouterr().out


@needs_vulkan
def test_gpu_fp16_attention_model_and_benchmark_cli(tiny_models, capsys):
    """The tiny Mobile-MQA model exported FP16 runs whole on the GPU in half precision; the
    benchmark reports full delegation, compile time, the protocol median and the check."""
    path = str(tiny_models["fp32"]).replace("fp32.tflite", "fp16_gpu.tflite")
    from tflite import export

    with open(path, "wb") as f:
        f.write(export.convert(tiny_models["fp32_keras"], "fp16"))
    result = benchmark.main(
        [path, "--accelerator", "gpu", "--num_runs", "5", "--repeats", "2", "--warmup_runs", "1"]
        + ["--core", "none", "--json"]
    )
    (m,) = result["models"]
    assert m["fully_accelerated"] and m["gpu_precision"] == "FP16"
    assert m["first_run_compile_ms"] > 0 and len(m["means_ms"]) == 2 and m["median_ms"] > 0
    assert m["check"]["images"] == 32 and m["check"]["sqnr_db"] > 30, m["check"]
    assert result["protocol"]["accelerator"] == "gpu"
    printed = json.loads(capsys.readouterr().out)  # --json: stdout is the JSON alone
    assert printed["models"][0]["fully_accelerated"] is True


def test_missing_vulkan_is_one_line_exit_2(conv_small, capsys, monkeypatch):
    monkeypatch.setenv("VK_ICD_FILENAMES", "/nonexistent/icd.json")
    assert "Vulkan" in accelerators.vulkan_missing()
    code, err = run_cli(benchmark.main, [conv_small["fp32"], "--accelerator", "gpu"], capsys)
    assert code == 2 and "install_vulkan.sh" in err and len(err.splitlines()) == 1, err


@needs_vulkan
def test_partial_delegation_for_real(tmp_path, capsys):
    """A real graph LiteRT 2.3's GPU accelerator does not take whole: GATHER_ND (found by trying
    ops here; GATHER_ND, RFFT2D, L2_NORMALIZATION, LOCAL_RESPONSE_NORMALIZATION, MATRIX_DIAG and
    int64 CASTs stay on the CPU, TOPK_V2 and CUMSUM do not). The check names the op from LiteRT's
    own log; the benchmark refuses it with exit 2 and writes nothing."""
    import tensorflow as tf

    def gather(x):
        return tf.gather_nd(tf.reshape(x, [64, 3]), tf.constant([[1], [5], [9]])) * 2.0

    f = tf.function(gather, input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    path = tmp_path / "gather_nd.tflite"
    path.write_bytes(converter.convert())
    images = np.random.default_rng(0).uniform(0, 255, (4, 8, 8, 3)).astype(np.float32)
    c = accelerators.isolated("check", path=str(path), accelerator="gpu", images=images)
    assert not c["fully_accelerated"], c
    assert [op for op in c["fallback_ops"] if op.startswith("GATHER_ND")], c["fallback_ops"]
    assert "GATHER_ND" in accelerators.Check(**c).line() and c["sqnr_db"] > 100  # still correct
    out = tmp_path / "r.json"
    code, err = run_cli(
        benchmark.main,
        [str(path), "--accelerator", "gpu", "--num_runs", "2", "--repeats", "1"]
        + ["--warmup_runs", "1", "--core", "none", "--output", str(out)],
        capsys,
    )
    assert code == 2 and "GATHER_ND" in err and "not whole" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_partial_delegation_is_reported_and_refused(conv_small, tmp_path, capsys, monkeypatch):
    """The same refusal without Vulkan: LiteRT's answer simulated (the real graph is above)."""
    real = accelerators.isolated

    def partial(task, **kwargs):
        if task == "benchmark":
            return {
                "protocol": {
                    "core": None,
                    "num_runs": 1,
                    "repeats": 1,
                    "num_threads": 1,
                    "xnnpack": True,
                    "accelerator": "gpu",
                },
                "models": [
                    {
                        "model": kwargs["paths"][0],
                        "median_ms": 1.0,
                        "means_ms": [1.0],
                        "fully_accelerated": False,
                        "first_run_compile_ms": 5.0,
                    }
                ],
            }
        result = accelerators.Check(
            "gpu",
            kwargs["path"],
            False,
            5.0,
            4,
            40.0,
            1e-3,
            1.0,
            "FP32",
            ["TOPK_V2: Operation is not supported."],
        ).to_dict()
        return result if task == "check" else real(task, **kwargs)

    monkeypatch.setattr(accelerators, "isolated", partial)
    monkeypatch.setattr(accelerators, "vulkan_missing", lambda: None)
    out = tmp_path / "r.json"
    code, err = run_cli(
        benchmark.main, [conv_small["fp32"], "--accelerator", "gpu", "--output", str(out)], capsys
    )
    assert code == 2 and "TOPK_V2" in err and "not whole" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_bad_accelerator_names(conv_small, capsys):
    code, err = run_cli(benchmark.main, [conv_small["fp32"], "--accelerator", "tpu"], capsys)
    assert code == 2 and "unknown accelerator 'tpu'" in err and len(err.splitlines()) == 1
    with pytest.raises(ToolError, match="unknown accelerator"):
        accelerators.Runner(conv_small["fp32"], "dsp")


# --- NPU (OpenVINO AOT) ------------------------------------------------------------------------


@needs_openvino
def test_npu_compile_and_run_conv_small_and_attention(conv_small, tiny_models, tmp_path):
    for source, images, min_sqnr in [
        (conv_small["int8"], conv_small["images"], 20.0),
        (tiny_models["int8_full"], tiny_models["images"], 5.0),
    ]:
        src = shutil.copy(source, tmp_path)
        report = npu.compile_model(src, npu.parse_target("intel_openvino"), log=lambda *_: None)
        assert report["ops_on_npu"] == report["ops"] and report["partitions"] == 1, report
        assert report["cpu_ops"] == {} and os.path.exists(report["compiled_model"])
        md, js = npu.report_paths(report["compiled_model"])
        assert (
            json.loads(Path(js).read_text())["ops_on_npu"] == report["ops"]
            and "ops in 1 NPU" in Path(md).read_text()
        )
        assert accelerators.compiled_for(report["compiled_model"]) == ("IntelOpenVINO", "LNL")
        c = accelerators.isolated(
            "check", path=report["compiled_model"], accelerator="npu", images=images, reference=src
        )
        # OpenVINO's and XNNPACK's int8 kernels round differently: conv_small's preconditioned
        # stand-in measured 31.9 and 38.3 dB (two inits; 31.1 dB on the trained quickstart model,
        # docs/tflite.md); the tiny all-int8 attention model's bar is the old stand-ins' (8-14 dB
        # measured). A wrong zero point or scale gives <= 0 dB.
        assert c["fully_accelerated"] and c["sqnr_db"] > min_sqnr, c


@pytest.mark.slow
@needs_openvino
def test_export_npu_flag_writes_compiled_model_and_report(tmp_path):
    from tflite import export

    out = tmp_path / "cs.tflite"
    report = export.main(
        ["--model", "conv_small@32", "--int8", "--calibration", "sklearn_digits"]
        + ["--num_calibration", "16", "--num_heldout", "8", "--output", str(out)]
        + ["--npu", "intel_openvino", "--check", "npu"]
    )
    compiled = tmp_path / "cs_npu_intel_openvino_LNL.tflite"
    assert report["npu"]["compiled_model"] == str(compiled) and compiled.exists()
    assert report["npu"]["ops_on_npu"] == report["npu"]["ops"]
    assert report["npu_check"]["fully_accelerated"] and report["npu_check"]["images"] == 32


@pytest.mark.parametrize(
    "vendor,package",
    [
        ("qualcomm", "ai-edge-litert-sdk-qualcomm"),
        ("mediatek", "ai-edge-litert-sdk-mediatek"),
        ("google_tensor", "ai-edge-litert-sdk-google-tensor"),
    ],
)
def test_vendor_without_sdk_is_one_line_naming_the_package(vendor, package, tmp_path, capsys):
    from tflite import export

    out = tmp_path / "m.tflite"
    code, err = run_cli(
        export.main,
        ["--model", "conv_small@32", "--int8", "--calibration", "random", "--output", str(out)]
        + ["--npu", vendor],
        capsys,
    )
    assert code == 2 and package in err and "network" in err and len(err.splitlines()) == 1, err
    assert os.listdir(tmp_path) == []  # refused before any work


def test_npu_bad_inputs(conv_small, tmp_path, capsys):
    from tflite import export

    out = str(tmp_path / "m.tflite")
    for args, message in [
        (["--fp32", "--npu", "intel_openvino"], "full-integer"),
        (["--int8", "--calibration", "random", "--npu", "tpu_vendor"], "unknown NPU vendor"),
        (["--int8", "--calibration", "random", "--npu", "qualcomm:SM0000"], "unknown qualcomm"),
        (["--fp32", "--check", "dsp"], "unknown accelerator 'dsp'"),
        (["--int8", "--calibration", "random", "--check", "npu"], "add --npu"),
    ]:
        code, err = run_cli(
            export.main, ["--model", "conv_small@32", "--output", out, *args], capsys
        )
        assert code == 2 and message in err and len(err.splitlines()) == 1, (args, err)
    assert os.listdir(tmp_path) == []
    with pytest.raises(ToolError, match="FP32 model; NPU compilation takes a full-integer"):
        npu.compile_model(conv_small["fp32"], npu.parse_target("intel_openvino"), output=out)
    assert not os.path.exists(out)


@needs_openvino
def test_failed_compilation_writes_nothing(conv_small, tmp_path):
    """OpenVINO's NPU device needs Intel's NPU compiler (absent): a clear error, no file."""
    src = shutil.copy(conv_small["int8"], tmp_path)
    with pytest.raises(ToolError, match="AOT compilation .* failed"):
        npu.compile_model(src, npu.parse_target("intel_openvino:LNL/npu"), log=lambda *_: None)
    assert sorted(os.listdir(tmp_path)) == [os.path.basename(src)]


@needs_openvino
def test_model_compiled_for_another_soc_is_refused(conv_small, tmp_path, capsys):
    src = shutil.copy(conv_small["int8"], tmp_path)
    report = npu.compile_model(src, npu.parse_target("intel_openvino"), log=lambda *_: None)
    data = Path(report["compiled_model"]).read_bytes()
    other = tmp_path / "for_qualcomm.tflite"
    other.write_bytes(data.replace(b"IntelOpenVINO\0", b"Qualcomm\0\0\0\0\0\0", 1))
    assert accelerators.compiled_for(str(other))[0] == "Qualcomm"
    code, err = run_cli(benchmark.main, [str(other), "--accelerator", "npu"], capsys)
    assert code == 2 and "compiled for Qualcomm" in err and len(err.splitlines()) == 1, err
    code, err = run_cli(benchmark.main, [report["compiled_model"], "--accelerator", "gpu"], capsys)
    assert code == 2 and "--accelerator npu" in err, err


# --- EdgeTPU prediction ------------------------------------------------------------------------


def test_edgetpu_prediction_across_attention_precisions(tiny_models, conv_small):
    """Coral's rules: a full-integer conv net maps whole; every attention precision we export
    leaves the attention core (and, one segment only, everything after it) on the CPU."""
    full = edgetpu_precheck.predict(conv_small["int8"])
    assert full["predicted_on_cpu"] == 0 and full["prediction"] is True
    expected_first = {
        "int8": "DEQUANTIZE",  # float attention core: DEQUANTIZE into float BATCH_MATMUL
        "int8_matmul": None,  # int8 matmuls, float softmax
        "int8_full": "BATCH_MATMUL",  # not in Coral's op list
    }
    for variant, first in expected_first.items():
        result = edgetpu_precheck.predict(tiny_models[variant])
        assert 0 < result["predicted_on_edgetpu"] < result["ops"], variant
        rows = result["rows"]
        cut = next(
            r
            for r in rows
            if r["where"] == "cpu"
            and "segment" not in r["reason"]
            and "io conversion" not in r["reason"]
        )
        if first:
            assert cut["op"] == first, (variant, cut)
        assert all(r["where"] == "cpu" for r in rows[rows.index(cut) :]), variant
        assert "segment" in rows[-1]["reason"] or rows[-1] is cut or "io" in rows[-1]["reason"]
    fp32 = edgetpu_precheck.predict(tiny_models["fp32"])
    assert fp32["predicted_on_edgetpu"] == 0
    assert "float32 tensor" in fp32["rows"][0]["reason"]
    text = edgetpu_precheck.format_prediction(fp32)
    assert text.startswith("EdgeTPU PREDICTION") and "not the compiler" in text


def test_edgetpu_precheck_cli_exit_codes(conv_small, tiny_models, capsys):
    assert edgetpu_precheck.main([conv_small["int8"]]) is True
    assert "60/60 ops on the Edge TPU" in capsys.readouterr().out
    assert edgetpu_precheck.main([tiny_models["int8_full"], "--json"]) is False
    assert json.loads(capsys.readouterr().out)["prediction"] is True
    code, err = run_cli(edgetpu_precheck.main, ["/nonexistent.tflite"], capsys)
    assert code == 2 and len(err.splitlines()) == 1


def test_io_details_and_compare():
    ref = np.array([[1.0, 2.0, 3.0]])
    assert accelerators.compare(ref, ref)["sqnr_db"] == float("inf")
    got = accelerators.compare(ref, ref + [[0.0, 0.0, 0.3]])
    assert got["max_rel_diff"] == pytest.approx(0.1) and got["top1_agreement"] == 1.0
