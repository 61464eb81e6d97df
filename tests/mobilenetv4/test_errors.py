"""Bad arguments fail early with messages that say what is wrong and what is allowed."""

import dataclasses

import pytest

import mobilenetv4
from mobilenetv4 import builder, specs
from mobilenetv4.cli import UserError


def test_unknown_model_name_suggests_and_lists():
    with pytest.raises(
        ValueError, match=r"unknown model 'conv_smal'.*did you mean 'conv_small'.*conv_large"
    ):
        mobilenetv4.create_model("conv_smal")


@pytest.mark.parametrize("shape", [(16, 224, 3), (224, 31, 3)])
def test_input_smaller_than_total_stride(shape):
    with pytest.raises(ValueError, match="smaller than the network's total stride 32"):
        mobilenetv4.create_model("conv_small", input_shape=shape)


@pytest.mark.parametrize("width", [0, -0.5])
def test_width_multiplier_must_be_positive(width):
    with pytest.raises(ValueError, match="width_multiplier must be > 0"):
        mobilenetv4.create_model("conv_small", width_multiplier=width)


def test_unknown_keyword():
    with pytest.raises(TypeError, match=r"unknown arguments \['num_classes'\].*classes"):
        mobilenetv4.create_model("conv_small", num_classes=10)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(pooling="mean"), "pooling must be None, 'avg' or 'max'"),
        (dict(padding="reflect"), "padding must be one of"),
        (dict(classes=0), "classes must be a positive integer"),
        (dict(attention_type="linear"), "attention_type must be one of"),
        (dict(dropout=1.0), r"dropout must be in \[0, 1\)"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mobilenetv4.create_model("conv_small", **kwargs)


def test_block_table_with_impossible_stride():
    arch = specs.ARCHITECTURES["conv_small"]
    stage = (specs.ExtraDW(5, 5, 3, 96, 2), specs.IB(3, 2, 96, 3))
    bad = dataclasses.replace(arch, stages=arch.stages[:2] + (stage,) + arch.stages[3:])
    with pytest.raises(ValueError, match=r"stage 3 block 1 \(IB\): stride 3 is impossible.*\(1,\)"):
        builder.build_model(bad)


def test_ffn_cannot_carry_a_stride():
    arch = specs.ARCHITECTURES["conv_medium"]
    stage = (specs.UIB(0, 0, 4, 80, 2),) + arch.stages[1][1:]
    bad = dataclasses.replace(arch, stages=arch.stages[:1] + (stage,) + arch.stages[2:])
    with pytest.raises(ValueError, match="FFN has no depthwise conv to carry stride 2"):
        builder.build_model(bad)


def test_stage_without_downsampling():
    arch = specs.ARCHITECTURES["conv_small"]
    stage = (specs.Conv2D(3, 96, 1), specs.Conv2D(1, 64))
    bad = dataclasses.replace(arch, stages=arch.stages[:1] + (stage,) + arch.stages[2:])
    with pytest.raises(ValueError, match=r"stage 2 block 0 \(Conv2D\): stride 1 is impossible"):
        builder.build_model(bad)


# Validation at the boundary (issue 16 #7/#8): every impossible value is a UserError (a ValueError)
# with one line naming the argument, before anything is built.


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(bn_epsilon=-1), r"bn_epsilon must be > 0 and finite, got -1"),
        (dict(bn_epsilon=0.0), "bn_epsilon must be > 0"),
        (dict(bn_epsilon=float("nan")), "bn_epsilon must be > 0 and finite, got nan"),
        (dict(bn_epsilon=float("inf")), "bn_epsilon must be > 0 and finite, got inf"),
        (dict(bn_momentum=1.0), r"bn_momentum must be in \[0, 1\), got 1.0"),
        (dict(bn_momentum=-0.1), r"bn_momentum must be in \[0, 1\)"),
        (dict(bn_momentum=float("nan")), r"bn_momentum must be in \[0, 1\), got nan"),
        (dict(width_multiplier=float("nan")), "width_multiplier must be > 0 and finite, got nan"),
        (dict(width_multiplier=float("inf")), "width_multiplier must be > 0 and finite, got inf"),
        (dict(width_multiplier="1"), "width_multiplier must be > 0 and finite, got '1'"),
        (dict(stochastic_depth_rate=1.0), r"stochastic_depth_rate must be in \[0, 1\)"),
        (dict(stochastic_depth_rate=-0.2), r"stochastic_depth_rate must be in \[0, 1\)"),
        (dict(dropout=float("nan")), r"dropout must be in \[0, 1\), got nan"),
        (dict(dropout=-0.5), r"dropout must be in \[0, 1\)"),
        (dict(classes=2.5), "classes must be a positive integer, got 2.5"),
        (dict(classes=True), "classes must be a positive integer, got True"),
        (dict(classes="10"), "classes must be a positive integer, got '10'"),
        (dict(input_shape=(64.5, 64, 3)), "input height must be an integer or None, got 64.5"),
        (dict(input_shape=(64, 64, 0)), "input channels must be a positive number, got 0"),
    ],
)
def test_impossible_hyper_parameters_are_user_errors(kwargs, match):
    with pytest.raises(UserError, match=match) as error:
        mobilenetv4.create_model("conv_small", **kwargs)
    assert isinstance(error.value, ValueError) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    "name,shape",
    [
        ("conv_small", (100000, 100000, 3)),
        ("hybrid_large", (8192, 8192, 3)),
        ("conv_large", (224, 10**7, 3)),
    ],
)
def test_absurd_input_sizes_are_refused_with_the_estimate(name, shape):
    with pytest.raises(UserError) as error:
        mobilenetv4.create_model(name, input_shape=shape)
    message = str(error.value)
    assert "\n" not in message
    assert f"input {shape[0]}x{shape[1]} needs an estimated" in message
    assert "GiB of activations per image, over the limit of 64 GiB" in message


def test_large_legitimate_inputs_still_build():
    model = mobilenetv4.create_model("conv_small", input_shape=(1024, 1024, 3))
    assert model.output_shape == (None, 1000)
    # the estimate grows with the pixel count and is far under the limit at 1024x1024
    arch = specs.ARCHITECTURES["conv_large"]
    small, large = (builder.estimate_activation_bytes(arch, s, s) for s in (512, 1024))
    assert 3.5 < large / small < 4.5 and large < builder.MAX_ACTIVATION_BYTES / 16
    assert mobilenetv4.create_model("conv_small", input_shape=(None, None, 3)).input_shape == (
        None,
        None,
        None,
        3,
    )
