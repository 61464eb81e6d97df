"""tf_keras weights files: the build record decides what they may load into, mismatches are one
clear error, and no file given as weights ever runs code (issue 16 #1, #6)."""

import hashlib
import json
import os
import pickle
import zipfile

import h5py
import numpy as np
import pytest
import tf_keras as keras

import mobilenetv4
from mobilenetv4 import build_record, cli, convert
from mobilenetv4.weights import keras_file

SMALL = dict(input_shape=(64, 64, 3), width_multiplier=0.25, classes=10)


def _sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _save(tmp_path, name, filename, record=True, **build):
    """Weights of `name` built with `build` (over SMALL), with or without a build record."""
    kwargs = {**SMALL, **build}
    model = mobilenetv4.create_model(name, **kwargs)
    path = str(tmp_path / filename)
    recorded = {k: v for k, v in kwargs.items() if k != "input_shape"}
    if record:
        keras_file.save_weights(
            model,
            path,
            build_record.make(name, build=recorded, input_size=kwargs["input_shape"][:2]),
        )
    elif filename.endswith(".keras"):
        model.save(path)
    else:
        model.save_weights(path)
    return model, path


def _one_line(error):
    message = str(error.value)
    assert "\n" not in message, message
    return message


def test_record_rebuilds_the_model_it_was_written_for(tmp_path):
    model, path = _save(tmp_path, "conv_small", "w.h5")
    loaded = mobilenetv4.create_model("conv_small", weights=path)  # no flags at all
    assert loaded.input_shape == (None, 64, 64, 3) and loaded.output_shape == (None, 10)
    x = np.random.default_rng(0).random((1, 64, 64, 3), np.float32)
    np.testing.assert_array_equal(loaded(x, training=False), model(x, training=False))
    # a caller passing None through (its "not given") keeps the recorded width
    again = mobilenetv4.create_model(
        "conv_small", weights=path, width_multiplier=None, input_shape=(None, None, 3)
    )
    np.testing.assert_array_equal(again(x, training=False), model(x, training=False))


def test_another_variant_with_identical_shapes_is_refused(tmp_path):
    # conv_medium and conv_blur_medium have the same tensors: only the record can tell them apart.
    _, path = _save(tmp_path, "conv_medium", "conv_medium.weights.h5", width_multiplier=0.125)
    before = _sha(path)
    with pytest.raises(cli.UserError) as error:
        mobilenetv4.create_model("conv_blur_medium", weights=path)
    message = _one_line(error)
    assert "'conv_medium'" in message and "'conv_blur_medium'" in message and path in message
    assert _sha(path) == before


@pytest.mark.parametrize(
    "override,words",
    [
        (dict(classes=7), ("classes=10", "classes=7")),
        (dict(width_multiplier=0.5), ("width_multiplier=0.25", "width_multiplier=0.5")),
    ],
)
def test_other_classes_or_width_are_refused(tmp_path, override, words):
    _, path = _save(tmp_path, "conv_small", "w.h5")
    with pytest.raises(cli.UserError) as error:
        mobilenetv4.create_model("conv_small", weights=path, **override)
    message = _one_line(error)
    assert all(word in message for word in words), message
    assert isinstance(error.value, ValueError)  # old `pytest.raises(ValueError)` callers still work


def test_recorded_default_width_is_the_architectures_width_not_any_width():
    # A record written with width_multiplier=None means create_model's default: the
    # architecture's own width (1.0; 0.5 for conv_small_050), not "fits any width".
    for name, default, other in (("conv_small", 1.0, 0.5), ("conv_small_050", 0.5, 1.0)):
        record = build_record.make(name, build=dict(width_multiplier=None, classes=10))
        build_record.check_compatible(record, name, dict(width_multiplier=default), "w.h5")
        build_record.check_compatible(record, name, dict(width_multiplier=None), "w.h5")
        with pytest.raises(cli.UserError, match=f"width_multiplier={other}"):
            build_record.check_compatible(record, name, dict(width_multiplier=other), "w.h5")


def test_other_attention_type_is_refused(tmp_path):
    _, path = _save(tmp_path, "hybrid_medium", "h.h5", width_multiplier=0.125, attention_type="mqa")
    with pytest.raises(cli.UserError) as error:
        mobilenetv4.create_model("hybrid_medium", weights=path, attention_type="mhsa")
    message = _one_line(error)
    assert "attention_type='mqa'" in message and "attention_type='mhsa'" in message
    # the recorded type is used when none is asked for
    model = mobilenetv4.create_model("hybrid_medium", weights=path)
    attention = [l for l in model.layers if isinstance(l, mobilenetv4.layers.MobileAttentionBlock)]
    assert attention and {l.attention_type for l in attention} == {"mqa"}


def test_record_of_the_first_converter_format_still_reads(tmp_path):
    # Files converted before build records had a format field: {"model", "build", "pretrained_cfg"}.
    model = mobilenetv4.create_model("conv_small", **SMALL)
    path = str(tmp_path / "old.weights.h5")
    model.save_weights(path)
    with h5py.File(path, "a") as f:
        f.attrs["mobilenetv4_build"] = json.dumps(
            {
                "model": "conv_small",
                "build": {"classes": 10, "width_multiplier": 0.25},
                "pretrained_cfg": None,
            }
        )
    loaded = mobilenetv4.create_model("conv_small", weights=path, input_shape=(64, 64, 3))
    assert loaded.output_shape == (None, 10)
    with pytest.raises(cli.UserError, match="holds weights of 'conv_small', not 'conv_large'"):
        mobilenetv4.create_model("conv_large", weights=path)


@pytest.mark.parametrize("filename", ["plain.h5", "plain.weights.h5", "plain.keras"])
def test_record_less_file_that_does_not_fit_names_file_and_first_layer(tmp_path, filename):
    _, path = _save(tmp_path, "conv_small", filename, record=False)
    with pytest.raises(cli.UserError) as error:
        mobilenetv4.create_model("conv_small", weights=path, **{**SMALL, "width_multiplier": 0.5})
    message = _one_line(error)
    assert path in message and "stage1_block0" in message and "does not fit" in message


def test_record_less_file_of_another_model_names_the_first_layer(tmp_path):
    _, path = _save(tmp_path, "conv_medium", "medium.h5", record=False)
    with pytest.raises(cli.UserError) as error:
        mobilenetv4.create_model("conv_small", weights=path, **SMALL)
    message = _one_line(error)
    assert path in message and "first mismatching layer" in message


@pytest.mark.parametrize(
    "content,message",
    [(b"", "not a readable weights file"), (b"\x00" * 64, "not a readable weights file")],
)
def test_unreadable_h5_is_one_line(tmp_path, content, message):
    path = tmp_path / "broken.h5"
    path.write_bytes(content)
    with pytest.raises(cli.UserError, match=message) as error:
        mobilenetv4.create_model("conv_small", weights=str(path), **SMALL)
    _one_line(error)


# Hostile files: each would run code (create the marker file) if deserialised as a model or
# unpickled. None may: they are given as weights and to the converter, and the marker must never
# appear.


def _marker_lambda(marker):
    def touch(x):
        with open(marker, "w") as f:
            f.write("code from a weights file ran")
        return x

    return touch


@pytest.fixture
def hostile_models(tmp_path):
    """{suffix: path} of whole models whose Lambda layer creates `marker` when deserialised."""
    marker = str(tmp_path / "MARKER")
    inputs = keras.Input((64, 64, 3))
    x = keras.layers.Lambda(_marker_lambda(marker), name="payload")(inputs)
    x = keras.layers.Conv2D(4, 3, name="conv")(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    paths = {}
    for suffix in (".h5", ".keras"):
        paths[suffix] = str(tmp_path / f"hostile{suffix}")
        model.save(paths[suffix])
    os.remove(marker)  # building the model above ran the lambda once
    return marker, paths


def test_hostile_h5_really_runs_code_when_loaded_as_a_model(hostile_models):
    # Guards the test: tf_keras's .h5 loader has no safe mode, so this file is truly hostile.
    marker, paths = hostile_models
    keras.models.load_model(paths[".h5"])
    assert os.path.exists(marker)


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_hostile_model_file_as_weights_never_runs(hostile_models, suffix):
    marker, paths = hostile_models
    before = _sha(paths[suffix])
    with pytest.raises(cli.UserError) as error:
        mobilenetv4.create_model("conv_small", weights=paths[suffix], **SMALL)
    message = _one_line(error)
    assert paths[suffix] in message and "Lambda layer payload" in message
    assert not os.path.exists(marker) and _sha(paths[suffix]) == before


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_hostile_model_file_given_to_convert_never_runs(tmp_path, capsys, hostile_models, suffix):
    marker, paths = hostile_models
    with pytest.raises(SystemExit) as info:
        cli.run(
            convert.main,
            [
                "--model",
                "conv_small",
                "--timm",
                paths[suffix],
                "--output",
                str(tmp_path / "out.h5"),
            ],
        )
    assert info.value.code == 2 and "not a timm checkpoint" in capsys.readouterr().err
    assert not os.path.exists(marker) and not os.path.exists(tmp_path / "out.h5")


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # unpickling calls open(marker, "w")
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("kind", ["plain.pt", "plain.pth", "plain.bin", "zip.pth"])
def test_pytorch_pickles_are_refused_without_unpickling(tmp_path, capsys, kind):
    marker = str(tmp_path / "MARKER")
    payload = pickle.dumps({"state_dict": _Payload(marker)}, protocol=2)
    layout, suffix = kind.split(".")
    path = str(tmp_path / f"checkpoint.{suffix}")
    if layout == "zip":  # torch.save's default layout: a zip holding data.pkl
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", payload)
    else:
        with open(path, "wb") as f:
            f.write(payload)
    with pytest.raises(cli.UserError, match="PyTorch .pth/.bin checkpoint") as error:
        mobilenetv4.create_model("conv_small", weights=path, **SMALL)
    _one_line(error)
    with pytest.raises(SystemExit) as info:
        cli.run(
            convert.main,
            ["--model", "conv_small", "--timm", path, "--output", str(tmp_path / "out.h5")],
        )
    assert info.value.code == 2 and "PyTorch" in capsys.readouterr().err
    assert not os.path.exists(marker) and not os.path.exists(tmp_path / "out.h5")


def test_fixture_with_pickled_arrays_is_refused(tmp_path, small_case, capsys):
    # A parity fixture's .npz is read with allow_pickle=False: an object array is an error.
    from mobilenetv4.weights import parity

    case = tmp_path / "case"
    with open(os.path.join(os.path.dirname(small_case.checkpoint), "conv_small_w0125.json")) as f:
        meta = json.load(f)
    (tmp_path / "case.json").write_text(json.dumps(meta))
    os.symlink(small_case.checkpoint, str(case) + ".safetensors")
    marker = str(tmp_path / "MARKER")
    np.savez(
        str(case) + ".npz", input_0=np.array([_Payload(marker)], dtype=object), logits_0=np.zeros(1)
    )
    with pytest.raises(SystemExit) as info:
        cli.run(parity.main, [str(tmp_path)])
    assert info.value.code == 2 and "pickle" in capsys.readouterr().err
    assert not os.path.exists(marker)


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_numpy_files_with_objects_are_refused_unread(tmp_path, suffix):
    marker = str(tmp_path / "MARKER")
    path = str(tmp_path / f"weights{suffix}")
    objects = np.array([_Payload(marker)], dtype=object)
    if suffix == ".npy":
        np.save(path, objects, allow_pickle=True)
    else:
        np.savez(path, w=objects)
    with pytest.raises(cli.UserError, match="numpy array file") as error:
        mobilenetv4.create_model("conv_small", weights=path, **SMALL)
    assert path in _one_line(error) and not os.path.exists(marker)
