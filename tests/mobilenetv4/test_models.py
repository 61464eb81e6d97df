"""The five architectures and width variants against timm 1.0.31's figures (its
`timm/models/mobilenetv3.py` MobileNetV4 definitions: parameter counts, MACs, blocks per stage)."""

import functools

import numpy as np
import pytest
import tf_keras as keras

import mobilenetv4
from mobilenetv4 import costs, specs

# Trainable parameters at 1000 classes (BN gamma/beta included, moving statistics not), timm 1.0.31.
TIMM_PARAMS = {
    "conv_small": 3_774_024,
    "conv_medium": 9_715_512,
    "hybrid_medium": 11_074_648,
    "conv_large": 32_590_864,
    "hybrid_large": 37_764_624,
    "conv_small_050": 2_238_952,
    "hybrid_medium_075": 7_313_528,
    "hybrid_large_075": 22_754_984,
    "conv_aa_large": 32_590_864,
    "conv_blur_medium": 9_715_512,
}
# MACs of convs, dense layers and attention matmuls on timm's PyTorch models (FlopCounterMode).
TIMM_GMACS = {
    "conv_small": (224, 0.1860),
    "conv_medium": (256, 1.0802),
    "hybrid_medium": (256, 1.2712),
    "conv_large": (384, 6.3762),
    "hybrid_large": (384, 7.7119),
    "conv_small_050": (224, 0.0647),
    "hybrid_medium_075": (224, 0.6498),
    "hybrid_large_075": (256, 2.0362),
    # anti-aliased variants; timm counts the fixed blur filter as a depthwise conv, we do not
    "conv_aa_large": (384, 7.0076),
    "conv_blur_medium": (224, 1.2026),
}
# Blocks per stage (stem, s1..s4, head conv).
BLOCKS_PER_STAGE = {
    "conv_small": [2, 2, 6, 6, 1],
    "conv_medium": [1, 2, 8, 11, 1],
    "conv_large": [1, 2, 11, 13, 1],
    "hybrid_medium": [1, 2, 12, 16, 1],
    "hybrid_large": [1, 2, 15, 18, 1],
}


@functools.lru_cache(maxsize=None)
def default_model(name):
    """Each model built once at its default resolution and shared by the tests below."""
    return mobilenetv4.create_model(name)


@functools.lru_cache(maxsize=None)
def flexible_model(name):
    return mobilenetv4.create_model(name, input_shape=(None, None, 3), classes=10)


def test_list_models_has_the_paper_models_and_width_variants():
    assert set(TIMM_PARAMS) <= set(mobilenetv4.list_models())


@pytest.mark.parametrize("name", sorted(TIMM_PARAMS))
def test_trainable_params_equal_timm(name):
    model = default_model(name)
    assert costs.count_params(model) == TIMM_PARAMS[name]


@pytest.mark.parametrize("name", sorted(TIMM_GMACS))
def test_macs_within_one_percent_of_timm(name):
    size, gmacs = TIMM_GMACS[name]
    model = default_model(name)
    assert model.input_shape == (None, size, size, 3)
    measured = costs.total_macs(model) / 1e9
    assert measured == pytest.approx(gmacs, rel=0.01)


@pytest.mark.parametrize("name", sorted(BLOCKS_PER_STAGE))
def test_blocks_per_stage(name):
    model = default_model(name)
    names = [layer.name for layer in model.layers]
    counts = [sum(n.startswith(f"stage{s}_") for n in names) for s in (1, 2, 3, 4)]
    counts.append(names.count("head_conv"))
    expected = BLOCKS_PER_STAGE[name]
    # timm's blocks.0 is our stage 1; timm's conv_stem is our separate "stem"
    assert counts == expected


ENDPOINT_CHANNELS = {
    "conv_small": (32, 64, 96, 128),
    "conv_medium": (48, 80, 160, 256),
    "conv_large": (48, 96, 192, 512),
    "hybrid_medium": (48, 80, 160, 256),
    "hybrid_large": (48, 96, 192, 512),
}


@pytest.mark.parametrize("name", sorted(ENDPOINT_CHANNELS))
def test_stage_outputs_at_strides_4_to_32(name):
    model = default_model(name)
    size = specs.ARCHITECTURES[name].default_size
    last_blocks = BLOCKS_PER_STAGE[name][:4]
    for s, (blocks, channels) in enumerate(zip(last_blocks, ENDPOINT_CHANNELS[name]), start=1):
        stride = 2 ** (s + 1)
        shape = model.get_layer(f"stage{s}_block{blocks - 1}").output_shape
        assert shape == (None, size // stride, size // stride, channels)


def test_features_only_returns_the_four_endpoints():
    model = mobilenetv4.create_model("hybrid_medium", features_only=True, input_shape=(256, 192, 3))
    shapes = {k: tuple(v.shape) for k, v in model.output.items()}
    assert shapes == {
        "stride_4": (None, 64, 48, 48),
        "stride_8": (None, 32, 24, 80),
        "stride_16": (None, 16, 12, 160),
        "stride_32": (None, 8, 6, 256),
    }


@pytest.mark.parametrize(
    "name,size",
    [("hybrid_medium", (256, 192)), ("hybrid_large", (384, 256)), ("conv_small", (224, 160))],
)
def test_non_square_inputs_run(name, size):
    model = flexible_model(name)
    out = model(np.random.rand(1, *size, 3).astype("float32"), training=False)
    assert out.shape == (1, 10)
    assert np.all(np.isfinite(out.numpy()))


def test_keras_applications_signature():
    model = mobilenetv4.create_model(
        "conv_small", include_top=False, pooling="avg", input_shape=(96, 96, 3)
    )
    assert model.output_shape == (None, 960)
    model = mobilenetv4.create_model("conv_small", include_top=False, input_shape=(96, 96, 3))
    assert model.output_shape == (None, 3, 3, 960)
    model = mobilenetv4.create_model(
        "conv_small",
        classes=7,
        classifier_activation="softmax",
        dropout=0.0,
        input_shape=(64, 64, 3),
    )
    probs = model(np.random.rand(2, 64, 64, 3).astype("float32")).numpy()
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    assert "dropout" not in [layer.name for layer in model.layers]


def test_width_multiplier_keeps_stem_and_head_features():
    model = mobilenetv4.create_model("conv_small", width_multiplier=0.5, input_shape=(64, 64, 3))
    assert model.get_layer("stem").output_shape[-1] == 32
    assert model.get_layer("stage1_block0").output_shape[-1] == 16
    assert model.get_layer("head_conv").output_shape[-1] == 480
    assert model.get_layer("head").output_shape[-1] == 1280


def test_batchnorm_and_padding_options_reach_every_layer():
    model = mobilenetv4.create_model(
        "hybrid_medium",
        bn_momentum=0.9,
        bn_epsilon=1e-3,
        padding="symmetric",
        input_shape=(64, 64, 3),
        width_multiplier=0.25,
    )
    bns = [l for l in model._flatten_layers() if isinstance(l, keras.layers.BatchNormalization)]
    assert bns and all(l.momentum == 0.9 and l.epsilon == 1e-3 for l in bns)
    pads = [l for l in model._flatten_layers() if isinstance(l, keras.layers.ZeroPadding2D)]
    # stem, FusedIB expand, 3 strided middle DWs, 4 x 2 K/V downsampling DWs
    assert len(pads) == 1 + 1 + 3 + 8


def test_stochastic_depth_grows_linearly_with_depth_on_every_residual_block():
    model = mobilenetv4.create_model(
        "hybrid_medium", stochastic_depth_rate=0.3, input_shape=(64, 64, 3), width_multiplier=0.25
    )
    rates = {
        l.name: l.drop_path.rate for l in model.layers if getattr(l, "drop_path", None) is not None
    }
    arch = specs.ARCHITECTURES["hybrid_medium"]
    assert rates["stage4_block15"] == pytest.approx(0.3 * (arch.num_blocks - 1) / arch.num_blocks)
    attention = [
        n for n in rates if isinstance(model.get_layer(n), mobilenetv4.layers.MobileAttentionBlock)
    ]
    assert len(attention) == 8
    ordered = list(rates.values())
    assert ordered == sorted(ordered)


def test_training_mode_stochastic_depth_changes_outputs_inference_does_not():
    model = mobilenetv4.create_model(
        "conv_medium",
        stochastic_depth_rate=0.5,
        dropout=0.0,
        input_shape=(64, 64, 3),
        width_multiplier=0.25,
    )
    x = np.random.rand(4, 64, 64, 3).astype("float32")
    np.testing.assert_array_equal(model(x, training=False), model(x, training=False))
    # BN in training mode uses batch statistics, so compare two training calls with one another.
    a, b = model(x, training=True).numpy(), model(x, training=True).numpy()
    assert not np.allclose(a, b)
