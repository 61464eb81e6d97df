"""Bad arguments fail early with messages that say what is wrong and what is allowed."""
import dataclasses

import pytest

import mobilenetv4
from mobilenetv4 import builder, specs


def test_unknown_model_name_suggests_and_lists():
  with pytest.raises(ValueError, match=r"unknown model 'conv_smal'.*did you mean 'conv_small'.*conv_large"):
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


@pytest.mark.parametrize("kwargs,match", [
    (dict(pooling="mean"), "pooling must be None, 'avg' or 'max'"),
    (dict(padding="reflect"), "padding must be one of"),
    (dict(classes=0), "classes must be a positive integer"),
    (dict(attention_type="linear"), "attention_type must be one of"),
    (dict(dropout=1.0), r"dropout must be in \[0, 1\)"),
])
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
