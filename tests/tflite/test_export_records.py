"""Train -> export hand-off (issue 12) and export reliability (issue 16).

A fake training run (what experiments.trainer leaves in MODEL_DIR: checkpoints/ckpt-N of
tf.train.Checkpoint(model, optimizer, ema), build.json, final.weights.h5 with an embedded build
record) lets `tflite.export` run from the record alone; the EMA averages differ from the raw
weights so the test can tell which were exported.
"""

import hashlib
import json
import os

import numpy as np
import pytest

from mobilenetv4 import build_record
from tflite import calibration, export

SIZE = 32


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def run_cli(capsys, *argv):
    """(exit code, stdout, stderr) of `python -m tflite.export ARGV` run in-process."""
    with pytest.raises(SystemExit) as e:
        export.main(list(argv))
        raise SystemExit(0)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def user_error(capsys, *argv):
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: "), err
    return lines[-1]


def record(**extra):
    return build_record.make(
        "conv_small",
        build={"classes": 10, "dropout": 0.1},
        input_size=[SIZE, SIZE],
        preprocessing="imagenet",
        weights="ema",
        has_ema=True,
        data="sklearn_digits",
        eval_crop_fraction=1.0,
        **extra,
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A training run of conv_small (10 classes, 32x32) with EMA, as the trainer writes it."""
    import tensorflow as tf
    import tf_keras as keras
    import mobilenetv4
    from experiments import optim

    keras.utils.set_random_seed(0)
    root = tmp_path_factory.mktemp("run")
    model = mobilenetv4.create_model(
        "conv_small", input_shape=(SIZE, SIZE, 3), classes=10, dropout=0.1
    )
    ema = optim.EMA(model, 0.99)
    rng = np.random.default_rng(0)
    for average in ema.averages:  # EMA weights != raw weights, BN variances kept positive
        average.assign(average.numpy() * rng.uniform(0.5, 1.5, average.shape).astype(np.float32))
    optimizer = keras.optimizers.AdamW()
    optimizer.build(model.trainable_variables)
    ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, ema=ema)
    tf.train.CheckpointManager(ckpt, str(root / "checkpoints"), max_to_keep=2).save()
    build_record.write_run(root, record())
    raw = [w.numpy() for w in model.weights]
    ema.swap()
    final = str(root / "final.weights.h5")
    model.save_weights(final)
    build_record.write_h5(final, record())
    averages = [w.numpy() for w in model.weights]
    return {"dir": str(root), "final": final, "raw": raw, "ema": averages}


def fresh_model():
    import mobilenetv4

    return mobilenetv4.create_model(
        "conv_small", input_shape=(SIZE, SIZE, 3), classes=10, dropout=0.1
    )


def test_checkpoint_restores_ema_by_default_and_raw_on_request(run_dir):
    model = fresh_model()
    path, kind = export.restore_checkpoint(model, run_dir["dir"])
    assert kind == "ema" and path.endswith("ckpt-1")
    for got, want in zip(model.weights, run_dir["ema"]):
        np.testing.assert_array_equal(got.numpy(), want)
    model = fresh_model()
    path, kind = export.restore_checkpoint(
        model, os.path.join(run_dir["dir"], "checkpoints"), raw_weights=True
    )
    assert kind == "raw"
    for got, want in zip(model.weights, run_dir["raw"]):
        np.testing.assert_array_equal(got.numpy(), want)
    assert any(not np.array_equal(a, b) for a, b in zip(run_dir["raw"], run_dir["ema"]))


def test_settings_come_from_the_record_and_flags_override_with_a_note(run_dir):
    notes = []
    args = export.parse_args(["--checkpoint", run_dir["dir"], "--fp32", "--output", "x.tflite"])
    settings = export.resolve(args, log=notes.append)
    assert settings["model_name"] == "conv_small" and settings["classes"] == 10
    assert settings["input_size"] == (SIZE, SIZE) and settings["preprocessing"] == "imagenet"
    assert settings["crop_fraction"] == 1.0 and settings["model_overrides"] == {"dropout": 0.1}
    assert notes == []
    args = export.parse_args(
        [
            "--checkpoint",
            run_dir["dir"],
            "--fp32",
            "--output",
            "x.tflite",
            "--preprocessing",
            "inception",
            "--input_size",
            "48",
            "--classes",
            "10",
        ]
    )
    settings = export.resolve(args, log=notes.append)
    assert settings["input_size"] == (48, 48) and settings["preprocessing"] == "inception"
    assert len(notes) == 2 and all(n.startswith("note: ") for n in notes), notes
    assert any("preprocessing='inception'" in n and "'imagenet'" in n for n in notes)
    assert any("input_size=[48, 48]" in n for n in notes)  # classes 10 = recorded: no note


def test_flags_that_contradict_the_weights_are_refused(run_dir, capsys, tmp_path):
    out = str(tmp_path / "m.tflite")
    err = user_error(
        capsys, "--checkpoint", run_dir["dir"], "--fp32", "--classes", "5", "--output", out
    )
    assert "classes=10" in err and "classes=5" in err
    err = user_error(
        capsys, "--weights", run_dir["final"], "--model", "conv_medium", "--fp32", "--output", out
    )
    assert "'conv_small'" in err and "'conv_medium'" in err
    assert not os.path.exists(out)


def test_int8_without_calibration_names_the_training_data(run_dir, capsys, tmp_path):
    err = user_error(
        capsys, "--checkpoint", run_dir["dir"], "--int8", "--output", str(tmp_path / "m.tflite")
    )
    assert "trained on sklearn_digits" in err and "--calibration sklearn_digits" in err


def test_record_driven_int8_export_with_heldout_top1(run_dir, capsys, tmp_path):
    out = str(tmp_path / "m.tflite")
    code, stdout, err = run_cli(
        capsys,
        "--checkpoint",
        run_dir["dir"],
        "--int8",
        "--calibration",
        "sklearn_digits",
        "--num_calibration",
        "8",
        "--num_heldout",
        "40",
        "--output",
        out,
    )
    assert code == 0, err
    report = json.load(open(out[: -len(".tflite")] + ".report.json"))
    assert report["weights"] == "ema" and report["weights_path"].endswith("ckpt-1")
    assert report["model"] == "conv_small" and report["input_size"] == [SIZE, SIZE]
    assert report["calibration"] == "sklearn_digits" and report["eval_crop_fraction"] == 1.0
    assert report["graph"]["input"]["shape"] == [1, SIZE, SIZE, 3] and report["graph"]["output"][
        "shape"
    ] == [1, 10]
    fid = report["fidelity"]
    assert (
        fid["images"] == 40 and 0.0 <= fid["keras_top1"] <= 1.0 and 0.0 <= fid["tflite_top1"] <= 1.0
    )
    assert "held-out-split" in fid["heldout"]
    assert "held-out top-1" in stdout and "weights: ema" in stdout
    md = open(out[: -len(".tflite")] + ".report.md").read()
    assert "held-out top-1" in md and "build record: conv_small" in md


def test_existing_outputs_are_never_clobbered(run_dir, capsys, tmp_path):
    out = tmp_path / "m.tflite"
    out.write_bytes(b"previous model")
    before = sha(out), sha(run_dir["final"])
    err = user_error(capsys, "--weights", run_dir["final"], "--fp32", "--output", str(out))
    assert "already exists; pass --overwrite" in err
    # The output is the weights input: refused even with --overwrite.
    err = user_error(
        capsys, "--weights", run_dir["final"], "--fp32", "--overwrite", "--output", run_dir["final"]
    )
    assert "is also an input" in err
    assert (sha(out), sha(run_dir["final"])) == before
    # A report next to the output is an output too.
    (tmp_path / "n.report.json").write_text("{}")
    assert "n.report.json already exists" in user_error(
        capsys, "--weights", run_dir["final"], "--fp32", "--output", str(tmp_path / "n.tflite")
    )
    assert "does not exist; create it first" in user_error(
        capsys,
        "--weights",
        run_dir["final"],
        "--fp32",
        "--output",
        str(tmp_path / "missing" / "m.tflite"),
    )


def test_failed_conversion_leaves_the_previous_file_intact(run_dir, capsys, tmp_path, monkeypatch):
    out = tmp_path / "m.tflite"
    out.write_bytes(b"previous model")
    before = sha(out)
    monkeypatch.setattr(export, "convert", lambda *a, **k: b"\0\0\0\0TFL3 truncated flatbuffer")
    err = user_error(
        capsys,
        "--weights",
        run_dir["final"],
        "--fp32",
        "--overwrite",
        "--num_heldout",
        "2",
        "--output",
        str(out),
    )
    assert "LiteRT cannot load" in err
    assert sha(out) == before
    assert sorted(os.listdir(tmp_path)) == ["m.tflite"]  # no temporary or report file left


def test_weights_file_with_a_lambda_layer_never_runs_code(capsys, tmp_path):
    import tf_keras as keras

    marker = tmp_path / "marker"

    def touch(x, marker=str(marker)):
        open(marker, "w").close()
        return x

    inputs = keras.Input((SIZE, SIZE, 3))
    hostile = keras.Model(inputs, keras.layers.Lambda(touch)(keras.layers.Conv2D(4, 3)(inputs)))
    path = str(tmp_path / "hostile.h5")
    hostile.save(path)  # a full model file holding the Lambda's code
    marker.unlink()
    err = user_error(
        capsys,
        "--model",
        "conv_small",
        "--weights",
        path,
        "--fp32",
        "--input_size",
        str(SIZE),
        "--output",
        str(tmp_path / "m.tflite"),
    )
    assert "hostile.h5" in err
    assert not marker.exists() and not os.path.exists(tmp_path / "m.tflite")


def write_images(folder, n, rng, offset=0):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(
            folder / f"{offset + i:03d}.png"
        )


def assert_disjoint(a, b):
    assert not any(np.array_equal(x, y) for x in a for y in b)


def test_symlink_loop_in_a_calibration_folder_is_deduplicated(tmp_path):
    rng = np.random.default_rng(0)
    write_images(tmp_path / "imgs" / "a", 6, rng)
    write_images(tmp_path / "imgs" / "b", 6, rng, offset=6)
    os.symlink("..", tmp_path / "imgs" / "a" / "loop")  # imgs/a/loop/a/loop/... -> imgs
    os.symlink("000.png", tmp_path / "imgs" / "a" / "copy.png")
    images = calibration.load(str(tmp_path / "imgs"), (16, 16), 300, 64, log=lambda *_: None)
    assert (len(images.calibration), len(images.heldout)) == (
        9,
        3,
    ) and "only 12 unique images" in images.note
    assert_disjoint(images.calibration, images.heldout)
    # The trainer's folder:DIR spec (labels from the class folders) is de-duplicated the same way.
    images = calibration.load(
        f"folder:{tmp_path / 'imgs'}", (16, 16), 300, 64, num_classes=2, log=lambda *_: None
    )
    assert len(images.calibration) + len(images.heldout) == 12
    assert images.heldout_labels is not None and set(images.heldout_labels) <= {0, 1}
    assert_disjoint(images.calibration, images.heldout)


def test_dataset_spec_calibrates_on_train_and_holds_out_eval(tmp_path):
    images = calibration.load(
        "sklearn_digits",
        (SIZE, SIZE),
        20,
        30,
        crop_fraction=1.0,
        num_classes=10,
        log=lambda *_: None,
    )
    assert images.calibration.shape == (20, SIZE, SIZE, 3) and images.heldout.shape == (
        30,
        SIZE,
        SIZE,
        3,
    )
    assert images.heldout_labels.shape == (30,) and images.heldout_labels.max() <= 9
    assert_disjoint(images.calibration, images.heldout)
    assert 0 <= images.calibration.min() and images.calibration.max() <= 255
    with pytest.raises(calibration.ToolError, match="10 classes but the model has 5"):
        calibration.load("sklearn_digits", (SIZE, SIZE), 2, 2, num_classes=5, log=lambda *_: None)
