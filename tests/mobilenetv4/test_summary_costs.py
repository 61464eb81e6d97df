"""The per-layer cost count on hand-computed cases, and the Table-11-style summary."""

import hashlib
import os

import pytest
import tf_keras as keras

import mobilenetv4
from mobilenetv4 import cli, costs, layers as L, summary, tables


def test_costs_of_hand_computed_layers():
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(inputs)  # 16x16x8
    x = keras.layers.DepthwiseConv2D(5, strides=2, padding="same")(x)  # 8x8x8
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(10)(x)
    model = keras.Model(inputs, x)
    got = [(c.kind, c.macs, c.params, c.output_shape) for c in costs.layer_costs(model)]
    assert got == [
        ("conv", 16 * 16 * 3 * 3 * 3 * 8, 3 * 3 * 3 * 8, (1, 16, 16, 8)),
        ("dwconv", 8 * 8 * 5 * 5 * 8, 5 * 5 * 8 + 8, (1, 8, 8, 8)),
        ("dense", 8 * 10, 8 * 10 + 10, (1, 10)),
    ]


def test_attention_matmul_cost_is_recorded_per_block():
    inputs = keras.Input((8, 8, 16))
    x = L.MobileAttentionBlock(2, 4, kv_strides=2, name="mqa")(inputs)
    model = keras.Model(inputs, x)
    by_kind = {}
    for cost in costs.layer_costs(model):
        assert cost.block == "mqa"
        by_kind.setdefault(cost.kind, []).append(cost)
    # n = 64 queries x 2 heads, m = 16 keys, key + value dim 4 + 4
    assert [c.macs for c in by_kind["attention_matmul"]] == [64 * 16 * 2 * 8]
    # query 1x1 (64*16*8), key/value DW 3x3 s2 on 4x4 (16*9*16 each), key/value 1x1 (16*16*4 each),
    # output 1x1 (64*8*16)
    assert sorted(c.macs for c in by_kind["conv"] + by_kind["dwconv"]) == sorted(
        [64 * 16 * 8, 16 * 9 * 16, 16 * 9 * 16, 16 * 16 * 4, 16 * 16 * 4, 64 * 8 * 16]
    )


def test_flexible_model_needs_an_input_shape():
    model = mobilenetv4.create_model(
        "conv_small", input_shape=(None, None, 3), width_multiplier=0.25
    )
    with pytest.raises(ValueError, match="pass input_shape"):
        costs.layer_costs(model)
    assert costs.total_macs(model, (64, 64, 3)) < costs.total_macs(model, (96, 96, 3))


# Table 11 (MNv4-Conv-S), read row by row: input, block, expanded dim, output dim, stride.
TABLE_11 = [
    ("224x224x3", "Conv2D", "-", 32, 2),
    ("112x112x32", "Conv2D", "-", 32, 2),
    ("56x56x32", "Conv2D", "-", 32, 1),
    ("56x56x32", "Conv2D", "-", 96, 2),
    ("28x28x96", "Conv2D", "-", 64, 1),
    ("28x28x64", "ExtraDW", 192, 96, 2),
    *[("14x14x96", "IB", 192, 96, 1)] * 4,
    ("14x14x96", "ConvNext", 384, 96, 1),
    ("14x14x96", "ExtraDW", 576, 128, 2),
    ("7x7x128", "ExtraDW", 512, 128, 1),
    ("7x7x128", "IB", 512, 128, 1),
    ("7x7x128", "IB", 384, 128, 1),
    ("7x7x128", "IB", 512, 128, 1),
    ("7x7x128", "IB", 512, 128, 1),
    ("7x7x128", "Conv2D", "-", 960, 1),
    ("7x7x960", "AvgPool", "-", 960, 1),
    ("1x1x960", "Conv2D", "-", 1280, 1),
    ("1280", "FC", "-", 1000, 1),
]


def test_summary_rows_mirror_table_11(capsys, tmp_path):
    out = tmp_path / "conv_small.csv"
    assert summary.main(["conv_small", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Trainable parameters: 3,774,024" in printed and "0.1860 G" in printed
    model = mobilenetv4.create_model("conv_small")
    rows = summary.block_rows(model)
    assert [
        (r["input"], r["block"], r["expanded"], r["output"], r["stride"]) for r in rows
    ] == TABLE_11
    assert sum(r["params"] for r in rows) == 3_774_024
    written = tables.read_csv(out)
    assert [r["block"] for r in written] == [row[1] for row in TABLE_11]
    assert sum(int(r["params"]) for r in written) == 3_774_024


def run(args, capsys):
    with pytest.raises(SystemExit) as e:
        cli.run(summary.main, args)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    return e.value.code, err, lines


def test_summary_cli_errors_are_one_line(capsys, tmp_path):
    a_file = tmp_path / "f"
    a_file.write_text("x")
    for args, message in [
        (["conv_tiny"], "unknown model 'conv_tiny'"),
        (["conv_small", "--input_size", "100000", "100000"], "choose a smaller input size"),
        (["conv_small@100000x100000"], "choose a smaller input size"),
        (["conv_small", "--input_size", "0", "224"], "must be at least 1"),
        (["conv_small", "--classes", "0"], "must be at least 1"),
        (["conv_small", "--width_multiplier", "nan"], "must be a finite number"),
        (["conv_small@96", "--input_size", "128", "128"], "give the size once"),
        (["keras:mobilenet_v2_100"], "describes this package's MobileNetV4 models"),
        (["conv_small", "--output", str(tmp_path / "missing" / "t.csv")], "does not exist"),
        (["conv_small", "--output", str(a_file / "t.csv")], "is a file, not a directory"),
        (["conv_small", "--output", str(tmp_path / "t.txt")], "name a .csv or .md file"),
    ]:
        code, err, lines = run(args, capsys)
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (args, err)
        assert message in err and "Traceback" not in err, (args, err)


def test_summary_output_is_never_clobbered(capsys, tmp_path):
    out = tmp_path / "t.md"
    out.write_text("keep me\n")
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    code, err, lines = run(["conv_small", "--output", str(out)], capsys)
    assert code == 2 and len(lines) == 1 and "already exists; pass --overwrite" in err
    assert hashlib.sha256(out.read_bytes()).hexdigest() == digest
    # The old --csv spelling is an alias (one deprecation line); --overwrite replaces atomically.
    assert summary.main(["conv_small@96", "--csv", str(out), "--overwrite"]) == 0
    assert "warning: --csv is deprecated" in capsys.readouterr().err
    text = out.read_text()
    assert text.startswith("| Input | Block |") and "| 96x96x3 | Conv2D |" in text
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]
