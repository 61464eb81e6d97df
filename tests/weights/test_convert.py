"""`python -m mobilenetv4.convert`: timm checkpoint -> self-describing Keras weights -> TFLite.

Also the file guarantees of docs/CONTRACT.md for this tool: exit 2 with one line for every user
error, no clobbering, never writing over the input, and atomic output (a failure leaves nothing)."""

import hashlib
import os

import numpy as np
import pytest
import tf_keras as keras

import mobilenetv4
from mobilenetv4 import build_record, cli, convert
from mobilenetv4.weights import keras_file


def _run(argv):
    """Runs the CLI as `python -m` does; returns the exit code."""
    with pytest.raises(SystemExit) as info:
        cli.run(convert.main, argv)
    return info.value.code


def _convert(case, output, *extra, timm=None):
    return _run(
        [
            "--model",
            case.meta["model"],
            "--timm",
            timm or case.checkpoint,
            "--output",
            output,
            "--width_multiplier",
            str(case.meta["width_multiplier"]),
            *extra,
        ]
    )


def _sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _one_error_line(capsys, *words):
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err), err
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


def _max_diff(model, case):
    return max(
        float(np.abs(model(x, training=False).numpy() - y).max())
        for x, y in zip(case.inputs, case.logits)
    )


def test_h5_output_rebuilds_the_timm_model_without_flags(tmp_path, small_case):
    out = str(tmp_path / "conv_small.weights.h5")
    assert _convert(small_case, out) == 0
    # No padding / epsilon / width / classes given: the file's build record supplies them.
    model = mobilenetv4.create_model("conv_small", weights=out, input_shape=(None, None, 3))
    assert _max_diff(model, small_case) <= 1e-4
    assert model.pretrained_cfg.name == "conv_small.custom"  # 10 classes: no published tag
    with pytest.raises(cli.UserError, match="holds weights of 'conv_small', not 'conv_medium'"):
        mobilenetv4.create_model("conv_medium", weights=out)


def test_h5_output_carries_a_build_record(tmp_path, small_case):
    out = str(tmp_path / "conv_small.h5")
    assert _convert(small_case, out) == 0
    record = build_record.read_h5(out)
    assert record["model"] == "conv_small" and record["weights"] == "raw"
    assert record["build"] == {
        "padding": "symmetric",
        "bn_epsilon": 1e-5,
        "classes": 10,
        "width_multiplier": 0.125,
    }
    # the tag's eval size and normalisation (conv_small.custom inherits the default tag's)
    assert record["input_size"] == [224, 224] and record["preprocessing"] == "imagenet"
    assert record["pretrained_cfg"]["tag"] == "custom" and record["eval_crop_fraction"] == 0.875
    # no flags: the record gives classes, width, padding and the input size
    model = mobilenetv4.create_model("conv_small", weights=out)
    assert model.input_shape == (None, 224, 224, 3) and model.output_shape == (None, 10)


def test_keras_output_is_a_whole_model(tmp_path, small_case):
    out = str(tmp_path / "conv_small.keras")
    assert _convert(small_case, out) == 0
    # our own file: its architecture may be deserialised (the layers are registered on import)
    model = keras.models.load_model(out)
    assert _max_diff(model, small_case) <= 1e-4
    weights_only = mobilenetv4.create_model(
        "conv_small", weights=out, **small_case.build_kwargs(padding="symmetric")
    )
    assert _max_diff(weights_only, small_case) <= 1e-4
    # it carries the same build record as an .h5 output: no flags needed, other variants refused
    record = build_record.read(out)
    assert record["model"] == "conv_small" and record["build"]["padding"] == "symmetric"
    from_record = mobilenetv4.create_model("conv_small", weights=out, input_shape=(None, None, 3))
    assert _max_diff(from_record, small_case) <= 1e-4
    with pytest.raises(cli.UserError, match="conv_small"):
        mobilenetv4.create_model("conv_blur_medium", weights=out)


@pytest.mark.parametrize(
    "damage,message",
    [
        ("truncate", "truncated"),
        ("pickle", "PyTorch .pth/.bin checkpoint"),
        ("variant", "does not fit model"),
    ],
)
def test_bad_checkpoints_exit_2_with_one_line_reason(tmp_path, capsys, small_case, damage, message):
    path = tmp_path / "model.safetensors"
    data = open(small_case.checkpoint, "rb").read()
    model = "conv_small"
    if damage == "truncate":
        path.write_bytes(data[:-4096])
    elif damage == "pickle":
        path.write_bytes(b"\x80\x02" + data[:200])
    else:
        path.write_bytes(data)
        model = "hybrid_medium"
    code = _run(
        [
            "--model",
            model,
            "--timm",
            str(path),
            "--output",
            str(tmp_path / "out.h5"),
            "--width_multiplier",
            "0.125",
        ]
    )
    assert code == 2
    _one_error_line(capsys, message)
    assert os.listdir(tmp_path) == ["model.safetensors"]


def test_refuses_to_overwrite_and_unknown_suffix(tmp_path, capsys, small_case):
    out = tmp_path / "w.h5"
    out.write_bytes(b"x")
    before = _sha(out)
    assert _convert(small_case, str(out)) == 2
    _one_error_line(capsys, str(out), "already exists; pass --overwrite")
    assert _sha(out) == before
    assert _convert(small_case, str(tmp_path / "w.pt")) == 2
    _one_error_line(capsys, "--output must end with")
    assert sorted(os.listdir(tmp_path)) == ["w.h5"]


def test_never_writes_over_its_input_even_with_overwrite(
    tmp_path, capsys, small_case, small_checkpoint_copy
):
    before = _sha(small_checkpoint_copy)
    link = tmp_path / "same.h5"  # another name for the input checkpoint
    os.symlink(small_checkpoint_copy, link)
    assert _convert(small_case, str(link), "--overwrite", timm=small_checkpoint_copy) == 2
    _one_error_line(capsys, "is also an input of this run")
    assert _sha(small_checkpoint_copy) == before and os.path.islink(link)


@pytest.mark.parametrize("where", ["missing", "file"])
def test_output_folder_must_exist_and_be_a_folder(tmp_path, capsys, small_case, where):
    parent = tmp_path / "nowhere"
    if where == "file":
        parent.write_bytes(b"not a folder")
    code = _convert(small_case, str(parent / "out.h5"))
    assert code == 2
    _one_error_line(capsys, "nowhere")
    assert os.path.isfile(parent) == (where == "file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only folders")
def test_read_only_output_folder(tmp_path, capsys, small_case):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        assert _convert(small_case, str(folder / "out.h5")) == 2
        _one_error_line(capsys, "permission denied")
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--classes", "0"], "--classes: must be at least 1"),
        (["--width_multiplier", "nan"], "--width_multiplier"),
        (["--model", "conv_smal"], "unknown model 'conv_smal'"),
    ],
)
def test_bad_flags_are_one_line_exit_2(tmp_path, capsys, small_case, argv, message):
    base = {
        "--model": "conv_small",
        "--timm": small_case.checkpoint,
        "--output": str(tmp_path / "o.h5"),
    }
    flags = dict(zip(argv[::2], argv[1::2]))
    merged = [x for k, v in {**base, **flags}.items() for x in (k, v)]
    assert _run(merged) == 2
    _one_error_line(capsys, message)
    assert os.listdir(tmp_path) == []


def test_a_failure_mid_write_leaves_no_file_and_keeps_the_old_one(
    tmp_path, monkeypatch, capsys, small_case
):
    out = tmp_path / "conv_small.h5"
    out.write_bytes(b"the previous good file")
    before = _sha(out)
    original = keras_file.save_weights

    def crash_after_writing(model, path, record):
        original(model, path, record)  # the temporary file is complete ...
        raise RuntimeError("simulated crash before the rename")  # ... but never renamed

    monkeypatch.setattr(keras_file, "save_weights", crash_after_writing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _convert(small_case, str(out), "--overwrite")
    assert os.listdir(tmp_path) == ["conv_small.h5"] and _sha(out) == before
    monkeypatch.undo()
    assert _convert(small_case, str(out), "--overwrite") == 0
    assert os.listdir(tmp_path) == ["conv_small.h5"] and _sha(out) != before
    assert build_record.read_h5(str(out))["model"] == "conv_small"


def test_converted_weights_export_to_int8_tflite(tmp_path, small_case):
    # The acceptance path: converter output straight into the export tool, no extra flags.
    export = pytest.importorskip("tflite.export")
    weights = str(tmp_path / "conv_small.weights.h5")
    assert _convert(small_case, weights) == 0
    out = str(tmp_path / "conv_small_int8.tflite")
    report = export.main(
        [
            "--model",
            "conv_small",
            "--weights",
            weights,
            "--int8",
            "--calibration",
            "random",
            "--num_calibration",
            "4",
            "--num_heldout",
            "2",
            "--input_size",
            "32",
            "32",
            "--classes",
            "10",
            "--output",
            out,
        ]
    )
    assert os.path.getsize(out) > 0
    assert report["graph"]["precision"] == "INT8"
    assert report["graph"]["op_histogram"]["CONV_2D"] > 0
