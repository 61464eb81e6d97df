"""Acceptance: the five paper models export to FP32, FP16 and INT8 and each .tflite agrees with its
Keras model. Reduced input (64x64) and 8 calibration images keep this within the CI budget; the
models get random weights with stand-in statistics (tflite.models.stand_in_statistics).

CI budget: by default every model is exported to INT8 and the two models of the acceptance
figures (conv_small, hybrid_medium) also to FP32 and FP16; MNV4_TFLITE_ALL_PRECISIONS=1 exports all
fifteen combinations (about 10 CPU-minutes).

Floors (measured values in docs/tflite.md): FP32 logits SQNR >= 50 dB with identical top-1;
FP16 >= 25 dB; INT8 >= 5 dB. INT8 of a random-weight network on noise images is far noisier than
of a trained one on photos, so the INT8 floor only catches broken quantization (wrong scales or
io types give <= 0 dB). Hybrids: no TRANSPOSE and at most 2 XNNPACK partitions in INT8.
"""

import concurrent.futures
import multiprocessing
import os

import pytest

from tflite.roundtrip import PAPER_MODELS, roundtrip

SQNR_FLOOR_DB = {"fp32": 50.0, "fp16": 25.0, "int8": 5.0}
ALL = ("fp32", "fp16", "int8")
PRECISIONS = {
    name: ALL
    if os.environ.get("MNV4_TFLITE_ALL_PRECISIONS") or name in ("conv_small", "hybrid_medium")
    else ("int8",)
    for name in PAPER_MODELS
}


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("roundtrip"))
    # Conversion is single-threaded Python/MLIR work: two processes use both CI cores.
    with concurrent.futures.ProcessPoolExecutor(
        2, mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        futures = {
            name: pool.submit(roundtrip, name, out, 64, PRECISIONS[name]) for name in PAPER_MODELS
        }
        return {name: f.result() for name, f in futures.items()}


@pytest.mark.slow
@pytest.mark.parametrize("name", PAPER_MODELS)
def test_export_matches_keras(reports, name):
    lines = []
    for precision, report in reports[name].items():
        fid, graph = report["fidelity"], report["graph"]
        lines.append(
            f"{name} {precision}: SQNR {fid['sqnr_db']:.1f} dB, top-1 agreement "
            f"{fid['top1_agreement']:.2f}, TRANSPOSE {graph['transposes']}, "
            f"partitions {graph['delegate_partitions']}, outside {graph['undelegated_ops']}"
        )
        print(lines[-1])
        assert graph["precision"] == precision.upper()
        assert fid["sqnr_db"] >= SQNR_FLOOR_DB[precision], lines[-1]
        assert graph["transposes"] == 0, lines[-1]
        if precision == "fp32":
            assert fid["top1_agreement"] == 1.0, lines[-1]
        if precision == "int8":
            # the default io: int8 pixels - 128 in (scale 1; zero point 114 - 128 = -14, the
            # default zero_point border: the real input is pixel - 114), int8 logits out
            assert graph["input"]["dtype"] == "int8" and graph["output"]["dtype"] == "int8"
            assert graph["input"]["zero_point"] == -14 and graph["input"]["scale"] == 1.0
            assert report["input_offset"] == 114 and report["stem_border"] == "zero_point"
            assert "CONCATENATION" not in graph["op_histogram"], lines[-1]
            if name.startswith("hybrid"):
                assert graph["delegate_partitions"] <= 2, lines[-1]
