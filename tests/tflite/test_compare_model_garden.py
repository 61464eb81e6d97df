"""The comparison tools: the decomposition row of tflite.compare_model_garden (a hybrid without its
attention blocks), and the command lines of compare_model_garden, ablations and roundtrip (flag
spellings, comma lists, one-line errors, existing outputs never clobbered)."""

import hashlib
import os

import pytest

from mobilenetv4 import cli
from tflite import ablations, compare_model_garden, roundtrip


def test_without_attention_removes_exactly_the_mobile_mqa_blocks():
    import mobilenetv4
    from mobilenetv4 import costs

    shape = (64, 64, 3)
    hybrid = mobilenetv4.create_model("hybrid_medium", input_shape=shape)
    conv_part = compare_model_garden.without_attention("hybrid_medium", shape)
    attention = [
        l for l in hybrid.submodules if isinstance(l, mobilenetv4.layers.MobileAttentionBlock)
    ]
    assert len(attention) == 8
    assert not [
        l for l in conv_part.submodules if isinstance(l, mobilenetv4.layers.MobileAttentionBlock)
    ]
    # Everything else is kept: the parameters differ by exactly the attention blocks' own.
    removed = sum(costs.count_params(block) for block in attention)
    assert costs.count_params(hybrid) - costs.count_params(conv_part) == removed > 0
    assert conv_part.output_shape == hybrid.output_shape


def test_sizes_come_from_the_architectures():
    from mobilenetv4 import specs

    for name in compare_model_garden.VARIANTS:
        assert compare_model_garden.input_size(name) == specs.get(name).default_size


def test_list_flags_are_comma_separated_with_the_old_form_deprecated(capsys):
    args = compare_model_garden.parse_args(
        ["--models", "conv_small,hybrid_medium", "--output_dir", "d", "--num_threads", "2"]
    )
    assert (args.models, args.output_dir, args.num_threads, args.core) == (
        ["conv_small", "hybrid_medium"],
        "d",
        2,
        "fastest",
    )
    old = compare_model_garden.parse_args(
        ["--models", "conv_small", "hybrid_medium", "--out_dir", "d"]
    )
    err = capsys.readouterr().err
    assert (old.models, old.output_dir) == (args.models, "d")
    assert "space-separated values for --models are deprecated" in err
    assert "warning: --out_dir is deprecated" in err
    rt = roundtrip.parse_args(["--models", "conv_small,conv_medium", "--output_dir", "d"])
    assert rt.models == ["conv_small", "conv_medium"] and rt.size == 64
    assert ablations.parse_args(["--out_dir", "d", "--repeats", "3"]).output_dir == "d"


@pytest.mark.parametrize(
    "tool,args,message",
    [
        (compare_model_garden, ["--models", "conv_large"], "not compared here"),
        (compare_model_garden, ["--num_calibration", "0"], "must be at least 1"),
        (compare_model_garden, ["--num_threads", "0"], "must be at least 1"),
        (compare_model_garden, ["--core", "big"], "a CPU index"),
        (ablations, ["--num_runs", "0"], "must be at least 1"),
        (ablations, ["--core", "1.5"], "a CPU index"),
        (roundtrip, ["--output_dir", "d", "--size", "16"], "at least 32 pixels"),
        (roundtrip, ["--output_dir", "d", "--models", "conv_tiny"], "unknown model 'conv_tiny'"),
        (roundtrip, ["--output_dir", "d", "--models", ","], "comma-separated list"),
    ],
)
def test_bad_flags_are_one_line_errors(tool, args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        cli.run(tool.main, args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    assert not os.path.exists(tmp_path / "d")


@pytest.mark.parametrize(
    "tool,name", [(compare_model_garden, "comparison.md"), (ablations, "ablations.json")]
)
def test_existing_reports_are_refused_before_any_work(tool, name, capsys, tmp_path):
    (tmp_path / name).write_text("an earlier run\n")
    digest = hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
    with pytest.raises(SystemExit) as e:
        cli.run(tool.main, ["--output_dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "already exists; pass --overwrite" in err, err
    assert hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() == digest
    assert sorted(os.listdir(tmp_path)) == [name]  # nothing converted


def test_roundtrip_refuses_existing_exports(capsys, tmp_path):
    old = tmp_path / "conv_small_64_int8.tflite"
    old.write_bytes(b"an earlier export")
    with pytest.raises(SystemExit) as e:
        cli.run(roundtrip.main, ["--models", "conv_small", "--output_dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "conv_small_64_int8.tflite already exists" in err, err
    assert old.read_bytes() == b"an earlier export" and sorted(os.listdir(tmp_path)) == [old.name]


def test_every_variant_has_its_own_file_and_label():
    """Cached conversions are reused by file name: two rows must never share one."""
    for name, variants in compare_model_garden.VARIANTS.items():
        names = [f"{v.side}_{name}_int8_{v.file_suffix}" for v in variants]
        labels = [f"{v.side}/{name}{v.note}" for v in variants]
        assert len(set(names)) == len(names) and len(set(labels)) == len(labels), name
