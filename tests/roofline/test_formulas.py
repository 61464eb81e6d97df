"""Per-layer roofline formulas on hand-computed cases, and Eq. 1 itself."""

import math

import numpy as np
import pytest
import tf_keras as keras

import mobilenetv4
from mobilenetv4.roofline import (
    RooflineOp,
    bytes_per_value,
    model_time,
    op_time,
    op_times,
    ridge_point,
    sweep,
)
from mobilenetv4.roofline.analysis import roofline_ops


def _single_layer_ops(layer, input_shape, precision="int8"):
    inp = keras.Input(input_shape)
    model = keras.Model(inp, layer(inp))
    return roofline_ops(model, precision)


@pytest.mark.parametrize("precision,bpv", [("int8", 1), ("fp16", 2), ("fp32", 4)])
def test_conv3x3(precision, bpv):
    ops = _single_layer_ops(keras.layers.Conv2D(4, 3, padding="same"), (8, 8, 3), precision)
    assert len(ops) == 1
    op = ops[0]
    assert op.kind == "conv"
    assert op.macs == 8 * 8 * (3 * 3 * 3) * 4  # every output pixel x kernel x out channels
    assert op.weight_bytes == (3 * 3 * 3 * 4 + 4) * bpv  # kernel + bias
    assert op.activation_bytes == (8 * 8 * 3 + 8 * 8 * 4) * bpv  # input + output
    assert op.intensity == pytest.approx(6912 / ((112 + 448) * bpv))


def test_depthwise_stride2():
    ops = _single_layer_ops(
        keras.layers.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False), (8, 8, 4)
    )
    (op,) = ops
    assert op.kind == "dwconv"
    assert op.macs == 4 * 4 * 3 * 3 * 4  # output is 4x4x4; one 3x3 filter per channel
    assert op.weight_bytes == 3 * 3 * 4
    assert op.activation_bytes == 8 * 8 * 4 + 4 * 4 * 4


def test_dense():
    (op,) = _single_layer_ops(keras.layers.Dense(10), (16,), "fp32")
    assert op.kind == "dense"
    assert op.macs == 160
    assert op.weight_bytes == (160 + 10) * 4
    assert op.activation_bytes == (16 + 10) * 4


def test_dense_over_a_map_is_a_pointwise_conv():
    (op,) = _single_layer_ops(keras.layers.Dense(5), (3, 3, 4))
    assert op.kind == "conv"
    assert op.macs == 3 * 3 * 4 * 5
    assert op.activation_bytes == 3 * 3 * 4 + 3 * 3 * 5


def test_grouped_conv_counts_as_depthwise():
    (op,) = _single_layer_ops(keras.layers.Conv2D(6, 7, padding="same", groups=6), (5, 5, 6))
    assert op.kind == "dwconv"
    assert op.macs == 5 * 5 * 7 * 7 * 6


def test_pooling_has_bytes_but_no_macs_and_1x1_head_conv_is_fc():
    inp = keras.Input((4, 4, 8))
    x = keras.layers.Conv2D(8, 1)(inp)
    x = keras.layers.GlobalAveragePooling2D(keepdims=True)(x)
    x = keras.layers.Conv2D(6, 1)(x)  # MobileNet heads: a 1x1 conv on the pooled 1x1 map
    ops = roofline_ops(keras.Model(inp, x), "int8")
    assert [op.kind for op in ops] == ["conv", "pool", "dense"]  # network order
    assert ops[2].macs == 8 * 6 and ops[2].weight_bytes == 8 * 6 + 6
    assert ops[1].macs == 0 and ops[1].weight_bytes == 0
    assert ops[1].activation_bytes == 4 * 4 * 8 + 8


def test_mobile_mqa_block():
    # 4x4x8 input, 2 heads of 4, one shared K/V head of 4, K/V downsampled 2x to 2x2.
    block = mobilenetv4.layers.MobileAttentionBlock(
        num_heads=2, key_dim=4, value_dim=4, kv_strides=2, name="mqa"
    )
    ops = _single_layer_ops(block, (4, 4, 8))
    by_name = {
        op.name.split("/")[-1] if op.kind != "attention_matmul" else "matmul": op
        for op in ops
        if "down" not in op.name
    }
    n, m, h, d = 16, 4, 2, 4
    assert by_name["query"].macs == n * 8 * h * d and by_name["query"].weight_bytes == 8 * 8
    assert by_name["key"].macs == m * 8 * d and by_name["key"].weight_bytes == 8 * d
    assert by_name["value"].macs == m * 8 * d
    assert by_name["output"].macs == n * h * d * 8
    downs = [op for op in ops if "down" in op.name]
    assert len(downs) == 2 and all(op.kind == "dwconv" and op.macs == m * 9 * 8 for op in downs)
    mm = by_name["matmul"]
    assert mm.kind == "attention_matmul" and mm.weight_bytes == 0
    assert mm.macs == n * m * h * (d + d)  # QK^T plus AV
    # Q + K + logits (read by AV) + V in, logits (written by QK^T) + O out
    q, k, logits, v, o = n * h * d, m * d, h * n * m, m * d, n * h * d
    assert mm.activation_bytes == q + k + logits + v + logits + o


def _toy_ops():
    return [
        RooflineOp("a", "a", "conv", macs=1000, weight_bytes=10, activation_bytes=40),
        RooflineOp("b", "b", "dense", macs=100, weight_bytes=200, activation_bytes=50),
    ]


def test_eq1_by_hand():
    ops = _toy_ops()  # intensities 20 and 0.4 MACs/byte
    assert model_time(ops, 0.0) == 1100  # RP 0 is plain MAC counting (paper footnote 2)
    # RP 10: op a is compute bound (1000 > 500), op b memory bound (2500 > 100).
    assert model_time(ops, 10.0) == 1000 + 2500
    # RP 30: both memory bound.
    assert model_time(ops, 30.0) == 50 * 30 + 250 * 30
    # With real peaks: 1 GMAC/s and 0.1 GB/s -> RP 10 and times in seconds.
    rp = ridge_point(1e9, 1e8)
    assert rp == 10
    assert model_time(ops, rp, peak_macs=1e9) == pytest.approx(1000 / 1e9 + 250 / 1e8)
    assert op_time(ops[1], rp, 1e9) == pytest.approx(max(100 / 1e9, 250 / 1e8))


def test_sweep_matches_eq1_and_is_monotone():
    ops = _toy_ops()
    rps = np.linspace(0, 500, 11)
    curve = sweep(ops, rps)
    assert np.allclose(curve, [model_time(ops, rp) for rp in rps])
    assert np.all(np.diff(curve) >= 0)
    assert np.allclose(op_times(ops, 10.0), [1000, 2500])


def test_bad_input_messages():
    with pytest.raises(ValueError, match="unknown precision 'int4'.*int8"):
        bytes_per_value("int4")
    with pytest.raises(ValueError, match="ridge point must be a finite number >= 0"):
        model_time(_toy_ops(), -1)
    with pytest.raises(ValueError, match="ridge_points must be"):
        sweep(_toy_ops(), [-5, 1])
    with pytest.raises(TypeError, match="built tf_keras Model"):
        roofline_ops("conv_small")
    inp = keras.Input((None, None, 3))
    with pytest.raises(ValueError, match="fixed input_shape"):
        roofline_ops(keras.Model(inp, keras.layers.Conv2D(2, 1)(inp)))
    assert math.isinf(RooflineOp("p", "p", "pool", 0, 0, 0).intensity)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_and_inf_are_refused(bad):
    """NaN passes `< 0` checks silently and inf gives inf/NaN times: both are refused."""
    from mobilenetv4.cli import UserError
    from mobilenetv4.roofline import memory_bound_fraction, ridge_point

    ops = _toy_ops()
    for call in (
        lambda: model_time(ops, bad),
        lambda: op_times(ops, bad),
        lambda: sweep(ops, [0.0, bad]),
        lambda: memory_bound_fraction(ops, bad),
        lambda: model_time(ops, 5.0, peak_macs=bad),
        lambda: sweep(ops, [1.0], peak_macs=bad),
        lambda: ridge_point(bad, 1e9),
        lambda: ridge_point(1e9, bad),
    ):
        with pytest.raises(UserError, match="finite"):
            call()
