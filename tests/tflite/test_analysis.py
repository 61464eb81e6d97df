"""Graph analysis and fidelity on a tiny Mobile MQA model exported several ways."""

import numpy as np
import pytest

from tflite import analysis, runtime


def test_sqnr_and_top1_agreement():
    ref = np.array([[1.0, 2.0, 3.0], [3.0, 1.0, 0.0]])
    assert analysis.sqnr_db(ref, ref) == float("inf")
    assert analysis.sqnr_db(ref, ref * 1.1) == pytest.approx(20.0)  # noise = 10% amplitude
    assert analysis.top1_agreement(ref, np.array([[0, 0, 1.0], [0, 1.0, 0]])) == 0.5


def test_int8_float_attention_runs_in_one_xnnpack_partition(tiny_models):
    stats = analysis.graph_stats(tiny_models["int8"])
    assert stats.precision == "INT8"
    assert stats.op_histogram["BATCH_MATMUL"] == 2 and stats.op_histogram["SOFTMAX"] == 1
    assert stats.transposes == 0
    assert stats.delegate_partitions == 1
    # Only the uint8 <-> int8 conversions at the graph's ends stay outside XNNPACK.
    assert set(stats.undelegated_ops) <= {"QUANTIZE"}
    assert stats.input["dtype"] == "uint8" and stats.input["scale"] == pytest.approx(1.0, rel=0.02)


def test_fully_quantized_attention_leaves_xnnpack(tiny_models):
    stats = analysis.graph_stats(tiny_models["int8_full"])
    assert "SOFTMAX" in stats.undelegated_ops  # XNNPACK has no int8 softmax
    assert stats.delegate_partitions >= 2


def test_fig10_layout_needs_transposes_mobile_mqa_does_not(tiny_models):
    assert analysis.graph_stats(tiny_models["fp32"]).transposes == 0
    assert analysis.graph_stats(tiny_models["fp32_fig10"]).transposes >= 2


def test_macs_and_params_match_keras(tiny_models):
    stats = analysis.graph_stats(tiny_models["fp32"])
    keras_model = tiny_models["fp32_keras"]
    stem = 8 * 8 * 32 * 27  # 3x3x3 conv to 32 ch at 8x8
    q = 64 * 32 * 32  # 1x1 query conv (2 heads x 16)
    kv = 2 * (16 * 9 * 32 + 16 * 32 * 16)  # K/V: 3x3 DW stride 2 + 1x1 conv to 16
    attn = 64 * 2 * 16 * 16 * 2  # QK^T and AV: (n*h) x m x d, twice
    out = 64 * 32 * 32  # output projection
    assert stats.macs == stem + q + kv + attn + out + 32 * 10
    # Keras also counts BN statistics, which TFLite folds into the convs.
    assert 0.8 * keras_model.count_params() < stats.params <= keras_model.count_params()


def test_fidelity_fp32_matches_keras(tiny_models):
    images = tiny_models["images"]
    keras_logits = tiny_models["fp32_keras"].predict(images, verbose=0)
    tflite_logits = runtime.run(runtime.load_interpreter(tiny_models["fp32"]), images)
    fid = analysis.fidelity(keras_logits, tflite_logits)
    assert fid["sqnr_db"] > 60 and fid["top1_agreement"] == 1.0


def test_report_names_every_figure(tiny_models):
    stats = analysis.graph_stats(tiny_models["int8_full"])
    text = analysis.format_report(
        stats, {"images": 4, "top1_agreement": 0.75, "sqnr_db": 21.5, "max_abs_diff": 0.1}, "tiny"
    )
    for needle in (
        "TRANSPOSE ops: 0",
        "XNNPACK delegate partitions:",
        "SOFTMAX x1",
        "SQNR 21.5 dB",
        "top-1 agreement 75.0%",
        "| CONV_2D | ",
    ):
        assert needle in text


def test_int8_matmul_attention_is_integer_and_stays_in_one_partition(tiny_models):
    stats = analysis.graph_stats(tiny_models["int8_matmul"])
    assert stats.delegate_partitions == 1 and set(stats.undelegated_ops) <= {"QUANTIZE"}
    interp = runtime.load_interpreter(tiny_models["int8_matmul"], xnnpack=False)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    matmuls = [op for op in interp._get_ops_details() if op["op_name"] == "BATCH_MATMUL"]
    assert len(matmuls) == 2
    for op in matmuls:
        lhs, rhs = (tensors[int(t)] for t in op["inputs"][:2])
        assert np.dtype(lhs["dtype"]) == np.dtype(rhs["dtype"]) == np.dtype(np.int8)
        assert rhs["quantization"][1] == 0  # what lets XNNPACK take an int8 matmul
    # The same tiny model with the standard recipe: the asymmetric K/V keep the matmuls out.
    full = analysis.graph_stats(tiny_models["int8_full"])
    assert full.undelegated_ops.get("BATCH_MATMUL", 0) >= 1
    # Integer matmuls cost little fidelity against the float-attention INT8 export.
    images = tiny_models["images"]
    sqnr = {
        v: analysis.sqnr_db(
            tiny_models[v + "_keras"].predict(images, verbose=0),
            runtime.run(runtime.load_interpreter(tiny_models[v]), images),
        )
        for v in ("int8", "int8_matmul")
    }
    assert sqnr["int8_matmul"] > sqnr["int8"] - 3.0, sqnr  # measured 34.3 vs 34.5 dB


def test_requantize_rejects_bytes_that_are_not_a_model():
    from tflite import ToolError, requantize

    with pytest.raises(ToolError, match="cannot parse"):
        requantize.symmetric_matmul_operands(b"not a flatbuffer")
