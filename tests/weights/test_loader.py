"""Strict loading: every problem listed in one error, nothing half-loaded, opt-outs that work."""

import shutil

import numpy as np
import pytest
import tf_keras as keras
from safetensors.numpy import save_file

import mobilenetv4
from mobilenetv4.weights import (
    CheckpointError,
    WeightMismatchError,
    load_timm_state_dict,
    read_safetensors,
    timm_targets,
)


def _model(case, **overrides):
    return mobilenetv4.create_model(
        "conv_small", **case.build_kwargs(padding="symmetric", **overrides)
    )


def test_missing_unexpected_and_mismatched_are_all_listed_and_nothing_loads(small_case):
    state = dict(read_safetensors(small_case.checkpoint))
    del state["blocks.2.1.dw_mid.conv.weight"]
    state["blocks.9.0.conv.weight"] = np.zeros((4, 4, 1, 1), np.float32)
    state["bn1.running_var"] = np.ones(7, np.float32)
    model = _model(small_case)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(WeightMismatchError) as info:
        load_timm_state_dict(model, state)
    message = str(info.value)
    assert "missing from the checkpoint (1)" in message
    assert "blocks.2.1.dw_mid.conv.weight" in message
    assert "unexpected in the checkpoint (1)" in message and "blocks.9.0.conv.weight" in message
    assert "bn1.running_var: checkpoint (7,), model expects (32,)" in message
    assert info.value.missing == ["blocks.2.1.dw_mid.conv.weight"]
    for b, a in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)  # all-or-nothing


def test_mapping_covers_every_tensor_of_the_checkpoint(small_case):
    state = read_safetensors(small_case.checkpoint)
    targets = timm_targets(_model(small_case))
    expected = {k for k in state if not k.endswith("num_batches_tracked")}
    assert set(targets) == expected


def test_new_classifier_for_fine_tuning(small_case):
    # Another class count: everything but the classifier loads; the features equal timm's path.
    tuned = mobilenetv4.create_model(
        "conv_small", weights=small_case.checkpoint, **small_case.build_kwargs(classes=3)
    )
    assert tuned.output_shape[-1] == 3
    original = mobilenetv4.create_model(
        "conv_small", weights=small_case.checkpoint, **small_case.build_kwargs()
    )
    x = small_case.inputs[0]
    features = [
        keras.Model(m.input, m.get_layer("flatten").output)(x, training=False).numpy()
        for m in (tuned, original)
    ]
    np.testing.assert_array_equal(features[0], features[1])


def test_strict_by_default_without_create_model(small_case):
    model = _model(small_case, classes=3)
    with pytest.raises(
        WeightMismatchError, match="Only the classifier differs.*new_classifier=True"
    ):
        load_timm_state_dict(model, read_safetensors(small_case.checkpoint))
    load_timm_state_dict(model, read_safetensors(small_case.checkpoint), new_classifier=True)


@pytest.mark.parametrize("overrides", [{"include_top": False}, {"features_only": True}])
def test_headless_models_take_the_backbone(small_case, overrides):
    model = mobilenetv4.create_model(
        "conv_small", weights=small_case.checkpoint, **small_case.build_kwargs(**overrides)
    )
    stem = read_safetensors(small_case.checkpoint)["conv_stem.weight"].transpose(2, 3, 1, 0)
    np.testing.assert_array_equal(model.get_layer("stem").conv.kernel.numpy(), stem)


def test_wrong_variant_is_named(case_factory):
    case = case_factory("conv_medium_w0125")
    with pytest.raises(
        WeightMismatchError,
        match=r"\[1, 2, 8, 11\] blocks per stage.*same layout as: conv_medium, "
        r"conv_blur_medium",
    ):
        mobilenetv4.create_model("conv_large", weights=case.checkpoint, **case.build_kwargs())


def test_wrong_width_is_named(small_case):
    with pytest.raises(WeightMismatchError, match="width 0.125"):
        mobilenetv4.create_model("conv_small", weights=small_case.checkpoint, classes=10)


def test_hub_path_naming_another_model_is_refused(tmp_path, small_case):
    folder = tmp_path / "models--timm--mobilenetv4_conv_medium.e500_r256_in1k"
    folder.mkdir()
    path = folder / "model.safetensors"
    shutil.copy(small_case.checkpoint, path)
    with pytest.raises(CheckpointError, match="named as a 'conv_medium' checkpoint"):
        mobilenetv4.create_model("conv_small", weights=str(path), **small_case.build_kwargs())


def test_in12k_head_and_tag(tmp_path, small_case):
    # A checkpoint with timm's 11821-class ImageNet-12k classifier builds an 11821-class model and
    # gets the 12k tag's preprocessing.
    state = dict(read_safetensors(small_case.checkpoint))
    rng = np.random.default_rng(0)
    state["classifier.weight"] = rng.normal(size=(11821, 1280)).astype(np.float32) * 0.01
    state["classifier.bias"] = np.zeros(11821, np.float32)
    path = str(tmp_path / "in12k.safetensors")
    save_file(state, path)
    model = mobilenetv4.create_model(
        "conv_small", weights=path, width_multiplier=0.125, input_shape=(None, None, 3)
    )
    assert model.output_shape[-1] == 11821
    np.testing.assert_array_equal(
        model.get_layer("classifier").kernel.numpy(), state["classifier.weight"].T
    )
    assert model.pretrained_cfg.num_classes == 11821
