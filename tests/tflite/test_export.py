"""Export CLI: refusals and clear errors (cheap, no conversion) and the calibration sources."""

import io
import os

import numpy as np
import pytest

from tflite import ToolError, calibration, export


def cli_error(capsys, *argv):
    with pytest.raises(SystemExit) as e:
        export.main(list(argv))
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    return err


def test_int8_without_calibration_refuses(capsys, tmp_path):
    err = cli_error(
        capsys, "--model", "conv_small", "--int8", "--output", str(tmp_path / "m.tflite")
    )
    assert "needs calibration images" in err and "--calibration random" in err


def test_unwritable_and_invalid_outputs(capsys, tmp_path):
    err = cli_error(
        capsys, "--model", "conv_small", "--fp32", "--output", "/nonexistent_dir/m.tflite"
    )
    assert "directory /nonexistent_dir does not exist" in err
    err = cli_error(capsys, "--model", "conv_small", "--fp32", "--output", str(tmp_path))
    assert "is a directory" in err
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if not os.access(locked, os.W_OK):  # root may write anyway
        assert "permission denied" in cli_error(
            capsys, "--model", "conv_small", "--fp32", "--output", str(locked / "m.tflite")
        )


def test_option_combinations(capsys, tmp_path):
    out = str(tmp_path / "m.tflite")
    assert "--io uint8 needs --int8" in cli_error(
        capsys, "--model", "conv_small", "--fp16", "--io", "uint8", "--output", out
    )
    assert "unknown model 'conv_smal' (did you mean 'conv_small'?)" in cli_error(
        capsys, "--model", "conv_smal", "--fp32", "--output", out
    )
    monkey_path = os.environ.get("PATH", "")
    os.environ["PATH"] = "/nonexistent"
    try:
        assert "edgetpu_compiler is not installed" in cli_error(
            capsys,
            "--model",
            "conv_small",
            "--int8",
            "--calibration",
            "random",
            "--edgetpu",
            "--output",
            out,
        )
    finally:
        os.environ["PATH"] = monkey_path


def test_model_weights_mismatch(capsys, tmp_path):
    import mobilenetv4

    weights = str(tmp_path / "small050.weights.h5")
    mobilenetv4.create_model("conv_small_050", input_shape=(32, 32, 3)).save_weights(weights)
    err = cli_error(
        capsys,
        "--model",
        "conv_small",
        "--weights",
        weights,
        "--fp32",
        "--input_size",
        "32",
        "32",
        "--output",
        str(tmp_path / "m.tflite"),
    )
    assert (
        "small050.weights.h5 does not fit" in err and "another model, width or class count" in err
    )
    err = cli_error(
        capsys,
        "--model",
        "conv_small",
        "--weights",
        str(tmp_path / "none.h5"),
        "--fp32",
        "--input_size",
        "32",
        "32",
        "--output",
        str(tmp_path / "m.tflite"),
    )
    assert "does not exist" in err
    err = cli_error(
        capsys,
        "--model",
        "conv_small",
        "--checkpoint",
        str(tmp_path),
        "--fp32",
        "--input_size",
        "32",
        "32",
        "--output",
        str(tmp_path / "m.tflite"),
    )
    assert "no TF checkpoint in" in err


def write_images(folder, n, rng):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (40 + i, 60, 3), dtype=np.uint8)).save(
            folder / f"{i:03d}.png"
        )


def test_image_folder_source(tmp_path):
    rng = np.random.default_rng(0)
    write_images(tmp_path / "imgs" / "class_a", 6, rng)
    write_images(tmp_path / "imgs" / "class_b", 6, rng)
    cal, held, note = calibration.load_split(
        str(tmp_path / "imgs"), (24, 32), 8, 4, log=lambda *_: None
    )
    assert cal.shape == (8, 24, 32, 3) and held.shape == (4, 24, 32, 3) and note == ""
    assert cal.dtype == np.float32 and 0 <= cal.min() and cal.max() <= 255 and cal.std() > 10
    cal, held, note = calibration.load_split(
        str(tmp_path / "imgs"), (24, 32), 300, 64, log=lambda *_: None
    )
    assert (len(cal), len(held)) == (9, 3) and "only 12 unique images" in note


def test_tfrecord_source(tmp_path):
    import tensorflow as tf
    from PIL import Image

    path = str(tmp_path / "val-00000-of-00001")
    with tf.io.TFRecordWriter(path) as w:
        for i in range(5):
            buf = io.BytesIO()
            Image.fromarray(np.full((30, 30, 3), 50 * i, np.uint8)).save(buf, format="JPEG")
            feature = {
                "image/encoded": tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[buf.getvalue()])
                )
            }
            w.write(
                tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
            )
    cal, held, _ = calibration.load_split(
        str(tmp_path / "val-*"), (16, 16), 3, 2, log=lambda *_: None
    )
    assert cal.shape == (3, 16, 16, 3) and held.shape == (2, 16, 16, 3)
    assert [round(float(x.mean())) for x in cal] == [0, 50, 100]  # source order is kept


def test_bad_sources(tmp_path):
    with pytest.raises(ToolError, match="neither 'random'"):
        calibration.load_split(str(tmp_path / "nothing*"), (8, 8), 4, 2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ToolError, match="no images"):
        calibration.load_split(str(tmp_path / "empty"), (8, 8), 4, 2)
    (tmp_path / "tfds").mkdir()
    for spec in ("tfds:mnist", "tfds:mnist:test"):  # the trainer's spec and one split of a dataset
        with pytest.raises(ToolError, match="is not prepared"):
            calibration.load_split(spec, (8, 8), 4, 2, tfds_data_dir=str(tmp_path / "tfds"))
    cal, held, note = calibration.load_split("random", (8, 8), 4, 2)
    assert cal.shape == (4, 8, 8, 3) and "random" in note
