"""Pretrained tags carry timm's preprocessing; `model.preprocess` applies it."""

import shutil

import numpy as np
import pytest
from PIL import Image

import mobilenetv4
from mobilenetv4.weights import (
    get_pretrained_cfg,
    list_pretrained,
    make_preprocess,
    resolve_pretrained_cfg,
)


def test_every_tag_belongs_to_a_model_we_build():
    models = set(mobilenetv4.list_models())
    assert {t.split(".")[0] for t in list_pretrained()} <= models
    assert "conv_aa_large.e230_r448_in12k_ft_in1k" in list_pretrained("conv_aa_large")


def test_tag_values_follow_timm():
    cfg = get_pretrained_cfg("mobilenetv4_conv_small_050.e3000_r224_in1k")
    assert (cfg.input_size, cfg.test_input_size, cfg.crop_pct, cfg.test_crop_pct) == (
        224,
        256,
        0.875,
        0.95,
    )
    assert cfg.mean == cfg.std == (0.5, 0.5, 0.5) and cfg.interpolation == "bicubic"
    large = get_pretrained_cfg("hybrid_large")  # bare name: the default tag
    assert large.name == "hybrid_large.ix_e600_r384_in1k" and large.mean == (0.485, 0.456, 0.406)
    assert large.eval_size_and_crop(test=True) == (448, 1.0)
    assert large.hf_hub_id == "timm/mobilenetv4_hybrid_large.ix_e600_r384_in1k"


def test_class_count_picks_the_12k_tag():
    assert resolve_pretrained_cfg("conv_medium", None, 11821).tag == "e180_r384_in12k"
    assert resolve_pretrained_cfg("conv_medium", None, 1000).tag == "e500_r256_in1k"
    assert resolve_pretrained_cfg("conv_medium", None, 7).tag == "custom"
    with pytest.raises(ValueError, match="belongs to model 'conv_small'"):
        resolve_pretrained_cfg("conv_medium", "conv_small.e2400_r224_in1k")
    with pytest.raises(ValueError, match="Did you mean conv_medium.e500_r256_in1k"):
        get_pretrained_cfg("conv_medium.e500_r256_in1")


def test_preprocess_matches_pil_resize_crop_normalise():
    cfg = get_pretrained_cfg("conv_medium.e500_r256_in1k")  # 256 px, crop 0.95, bicubic
    rng = np.random.default_rng(0)
    # a smooth image (as photos are), 300x400: shorter side -> floor(256/0.95)=269, then crop 256
    yy, xx = np.mgrid[0:300, 0:400]
    image = np.stack(
        [128 + 100 * np.sin(xx / 17.0), 128 + 100 * np.cos(yy / 23.0), (xx + yy) % 256], -1
    ) + rng.normal(0, 3, (300, 400, 3))
    image = np.clip(image, 0, 255).astype(np.uint8)
    ours = make_preprocess(cfg)(image).numpy()
    resized = np.asarray(Image.fromarray(image).resize((358, 269), Image.BICUBIC), np.float32)
    top, left = round((269 - 256) / 2), round((358 - 256) / 2)
    crop = resized[top : top + 256, left : left + 256]
    reference = (crop / 255.0 - np.array(cfg.mean)) / np.array(cfg.std)
    assert ours.shape == (256, 256, 3)
    # TF's antialiased bicubic is close to PIL's, not bit-exact: within ~1 grey level on average.
    assert np.abs(ours - reference).mean() < 1.0 / 255 / 0.225
    assert np.abs(ours - reference).max() < 0.5


def test_preprocess_batch_and_test_size():
    cfg = get_pretrained_cfg("conv_small.e3600_r256_in1k")
    batch = np.full((2, 100, 120, 3), 127.5, np.float32)
    out = make_preprocess(cfg, test=True)(batch).numpy()
    assert out.shape == (2, 320, 320, 3)
    np.testing.assert_allclose(out, 0.0, atol=1 / 127.5)  # mean 0.5, std 0.5: mid-grey -> ~0
    with pytest.raises(ValueError, match="expected RGB images"):
        make_preprocess(cfg)(np.zeros((10, 10), np.uint8))


def test_model_from_hub_path_gets_its_tag_and_preprocess(tmp_path, small_case):
    folder = tmp_path / "mobilenetv4_conv_small.e3600_r256_in1k"
    folder.mkdir()
    path = folder / "model.safetensors"
    shutil.copy(small_case.checkpoint, path)
    model = mobilenetv4.create_model("conv_small", weights=str(path), **small_case.build_kwargs())
    assert model.pretrained_cfg.name == "conv_small.e3600_r256_in1k"
    x = model.preprocess(np.zeros((1, 300, 300, 3), np.uint8))
    assert x.shape == (1, 256, 256, 3)
    np.testing.assert_allclose(x.numpy(), -1.0)  # (0 - 0.5) / 0.5
    assert model(x).shape == (1, small_case.meta["classes"])
