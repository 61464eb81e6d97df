"""One model-name grammar and resolver (issue 12), and the roofline CLI's handling of bad inputs
and existing files (issue 16): one `error:` line and exit 2, nothing on disk lost."""

import ast
import hashlib
import importlib.util
import os

import pytest

from mobilenetv4 import cli, specs
from mobilenetv4.cli import UserError
from mobilenetv4.roofline import zoo
from mobilenetv4.roofline.__main__ import main, parse_args

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_resolver_grammar():
    s = zoo.resolve("conv_small@96")
    assert (s.source, s.name, s.resolution, s.label) == (
        "mobilenetv4",
        "conv_small",
        (96, 96),
        "conv_small@96",
    )
    s = zoo.resolve("hybrid_medium@256x192")
    assert s.resolution == (256, 192) and s.label == "hybrid_medium@256x192" and s.has_attention
    assert s.file_label == "hybrid_medium_256x192"
    # keras: the family names (the prefix may be dropped) and tf_keras function names.
    assert (
        zoo.resolve("keras:mobilenet_v2_100").label
        == zoo.resolve("mobilenet_v2_100").label
        == "mobilenet_v2_100@224"
    )
    assert zoo.resolve("efficientnet_b3").resolution == (300, 300)  # EfficientNet's own size
    s = zoo.resolve("keras:MobileNetV3Small@160")
    assert (s.source, s.label) == ("keras", "keras:MobileNetV3Small@160")
    # model_garden: our names or Model Garden's model_id; MobileNetV4 sizes from Architecture.
    s = zoo.resolve("model_garden:MobileNetV4HybridMedium")
    assert (s.source, s.name, s.resolution) == ("model_garden", "hybrid_medium", (256, 256))
    assert s.label == "model_garden:hybrid_medium@256" and s.has_attention
    assert zoo.resolve("model_garden:conv_small").resolution == (224, 224)
    for bad, message in [
        ("conv_smal", "did you mean 'conv_small'"),
        ("onnx:conv_small", "unknown model source"),
        ("conv_small@big", "bad resolution"),
        ("conv_small@16", "below the 32x32 minimum"),
        ("keras:not_a_model", "unknown keras model"),
        ("model_garden:conv_aa_large", "Model Garden has no MobileNetV4"),
        ("model_garden:hybrid_medium@256x192", "square inputs only"),
        ("conv_small@100000", "choose a smaller input size"),
    ]:
        with pytest.raises(UserError, match=message):
            zoo.resolve(bad)
    assert [s.label for s in zoo.parse_list("conv_small, conv_small@224,mobilenet_v1_025@64")] == [
        "conv_small@224",
        "mobilenet_v1_025@64",
    ]  # duplicates removed, order kept


def _load_script(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "scripts", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_default_resolutions_come_from_architecture_only():
    for name, arch in specs.ARCHITECTURES.items():
        assert zoo.resolve(name).resolution == (arch.default_size,) * 2, name
    # The zoo used to analyse conv_aa_large at 224 from its own table.
    assert zoo.resolve("conv_aa_large").resolution == (384, 384)
    from tflite import compare_model_garden

    assert not hasattr(zoo, "MNV4_RESOLUTION") and not hasattr(compare_model_garden, "SIZES")
    assert compare_model_garden.input_size("hybrid_medium") == 256
    fixtures = _load_script("make_timm_fixtures")
    assert not hasattr(fixtures, "DEFAULT_SIZES")
    assert fixtures.full_cases(["conv_aa_large"])[0][4] == [(384, 384)]
    assert fixtures.full_cases(["hybrid_medium_075"])[0][4] == [(224, 224), (224, 288)]


def test_model_library_imports_no_tool():
    offenders = []
    for root, _, files in os.walk(os.path.join(ROOT, "mobilenetv4")):
        for f in files:
            if not f.endswith(".py"):
                continue
            path = os.path.join(root, f)
            for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                    if isinstance(node, ast.ImportFrom)
                    else []
                )
                offenders += [
                    (os.path.relpath(path, ROOT), n)
                    for n in names
                    if n.split(".")[0] in ("tflite", "experiments")
                ]
    assert offenders == []


def test_tools_build_through_the_resolver():
    from tflite import models

    assert models.resolve is zoo.resolve
    assert models.build("conv_small@64", classes=10).output_shape == (None, 10)
    assert models.build("mobilenet_v1_025", (32, 32, 3)).input_shape == (None, 32, 32, 3)
    with pytest.raises(UserError, match="give the size once"):
        models.build("conv_small@64", (96, 96, 3))
    with pytest.raises(UserError, match="apply to our models only"):
        models.build("keras:mobilenet_v2_035", (32, 32, 3), weights="w.h5")


def run_main(args, capsys):
    with pytest.raises(SystemExit) as e:
        cli.run(main, args)
    return e.value.code, capsys.readouterr().err


def one_error_line(err):
    lines = [line for line in err.splitlines() if line.strip()]
    return len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err


@pytest.mark.parametrize(
    "content,message",
    [
        ("model,latency_ms\nconv_small,nan\n", "finite number > 0"),
        ("model,latency_ms\nconv_small,inf\n", "finite number > 0"),
        ("model,latency_ms\nconv_small,-1\n", "finite number > 0"),
        ("model,latency_ms\nconv_small,fast\n", "is not a number"),
        ("model,latency_ms\n,3\n", "column is empty"),
        (b"\x89PNG\r\n\x1a\n\xff\xfe\x00garbage", "not a readable CSV"),
    ],
)
def test_bad_latency_csv_is_one_line(tmp_path, capsys, content, message):
    lat = tmp_path / "lat.csv"
    (lat.write_bytes if isinstance(content, bytes) else lat.write_text)(content)
    code, err = run_main(
        ["--models", "conv_small", "--latencies", str(lat), "--output_dir", str(tmp_path / "out")],
        capsys,
    )
    assert code == 2 and message in err and one_error_line(err), err
    assert not (tmp_path / "out").exists()


def test_bad_output_folders_and_sizes(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    cases = [
        (["--output_dir", str(a_file)], "is a file, not a directory"),
        (["--output_dir", str(a_file / "sub")], "cannot create"),
        (
            ["--models", "conv_small@100000", "--output_dir", str(tmp_path / "o")],
            "choose a smaller input size",
        ),
    ]
    if os.geteuid() != 0:  # root writes into read-only folders anyway
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        cases.append((["--output_dir", str(ro)], "permission denied"))
    for args, message in cases:
        if "--models" not in args:
            args = ["--models", "conv_small"] + args
        code, err = run_main(args, capsys)
        assert code == 2 and message in err and one_error_line(err), (args, err)


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_existing_outputs_are_refused_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    old = out / "summary.md"
    old.write_text("an earlier analysis\n")
    before = _digest(old)
    args = [
        "--models",
        "mobilenet_v1_025@32",
        "--rp_max",
        "50",
        "--rp_step",
        "10",
        "--output_dir",
        str(out),
    ]
    code, err = run_main(args, capsys)
    assert code == 2 and "already exists; pass --overwrite" in err and one_error_line(err), err
    assert _digest(old) == before and sorted(os.listdir(out)) == ["summary.md"]
    # An input of the run is never an output, --overwrite or not.
    lat = out / "fit.csv"
    lat.write_text(
        "model,latency_ms\nmobilenet_v1_025@32,1\nmobilenet_v1_050@32,2\nmobilenet_v2_035@32,3\n"
    )
    lat_before = _digest(lat)
    code, err = run_main(args + ["--latencies", str(lat), "--overwrite"], capsys)
    assert code == 2 and "is also an input" in err and one_error_line(err), err
    assert _digest(lat) == lat_before and _digest(old) == before
    lat.unlink()
    assert main(args + ["--overwrite"]) == 0
    assert "Roofline analysis" in old.read_text()
    assert not [f for f in os.listdir(out) if f.startswith(".tmp-")]  # atomic writes left no temp


def test_documented_old_flag_spellings_are_aliases(capsys):
    new = parse_args(
        [
            "--models",
            "conv_small",
            "--rp_max",
            "40",
            "--rp_step",
            "2",
            "--fig3_models",
            "conv_small",
            "--per_model_plots",
            "--output_dir",
            "d",
        ]
    )
    capsys.readouterr()
    old = parse_args(
        [
            "--models",
            "conv_small",
            "--rp-max",
            "40",
            "--rp-step=2",
            "--fig3-models",
            "conv_small",
            "--per-model-plots",
            "--out",
            "d",
        ]
    )
    err = capsys.readouterr().err
    assert vars(old) == vars(new)
    for flag, replacement in [
        ("--rp-max", "--rp_max"),
        ("--rp-step", "--rp_step"),
        ("--fig3-models", "--fig3_models"),
        ("--per-model-plots", "--per_model_plots"),
        ("--out", "--output_dir"),
    ]:
        assert f"warning: {flag} is deprecated" in err and f"use {replacement}" in err


def test_forward_memory_estimate_counts_attention_logits(monkeypatch):
    import tf_keras as keras
    from mobilenetv4 import layers as L

    inputs = keras.Input((8, 8, 16), batch_size=1)
    block = L.MobileAttentionBlock(num_heads=2, key_dim=4, kv_strides=2, name="mqa")
    model = keras.Model(inputs, block(inputs))
    # Input and output 8x8x16 each, logits 2 heads x 64 queries x 16 keys.
    assert zoo.attention_logits(block) == 2 * 64 * 16
    need = (2 * 8 * 8 * 16 + 2 * 64 * 16) * 4 * zoo.FORWARD_MEMORY_FACTOR
    assert zoo.forward_bytes(model) == need
    zoo.check_model_memory(model, "tiny")  # fits
    monkeypatch.setattr(zoo, "available_memory_bytes", lambda: need - 1)
    with pytest.raises(UserError, match="tiny at 8x8 needs about .* choose a smaller input size"):
        zoo.check_model_memory(model, "tiny")
