"""Shared fixtures: one tiny attention model exported three ways (cheap to convert), and the
paths of the fake adb / edgetpu_compiler scripts."""

import os
import sys

import numpy as np
import pytest

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


def tiny_attention_model(attention_type="mobile_mqa"):
    """ConvBN -> Mobile MQA block (K/V stride 2) -> pool -> dense: every op kind the analysis must see."""
    import tf_keras as keras
    import mobilenetv4

    L = mobilenetv4.layers
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3), batch_size=1)
    x = L.ConvBN(32, 3, 2, activation="relu", name="stem")(inputs)
    x = L.MobileAttentionBlock(
        num_heads=2,
        key_dim=16,
        kv_strides=2,
        attention_type=attention_type,
        layer_scale_init_value=1.0,
        name="attention",
    )(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(
        inputs, keras.layers.Dense(10, name="classifier")(x), name=f"tiny_{attention_type}"
    )


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """{variant: path} of the tiny model as fp32, int8 (float attention core), int8 (everything
    quantized), int8 with int8 matmuls and float softmax, and fp32 with the paper's Fig. 10 MQA
    layout."""
    from tflite import export, models

    out = tmp_path_factory.mktemp("tiny")
    images = np.random.default_rng(0).uniform(0, 255, (16, 16, 16, 3)).astype(np.float32)
    paths = {}
    for variant, attention_type, precision, attention in [
        ("fp32", "mobile_mqa", "fp32", "float"),
        ("int8", "mobile_mqa", "int8", "float"),
        ("int8_full", "mobile_mqa", "int8", "int8"),
        ("fp32_fig10", "mqa", "fp32", "float"),
        ("int8_matmul", "mobile_mqa", "int8", "int8_matmul"),
    ]:
        model = export.with_pixel_input(tiny_attention_model(attention_type), "imagenet", (16, 16))
        models.stand_in_statistics(model, images)
        paths[variant] = str(out / f"{variant}.tflite")
        with open(paths[variant], "wb") as f:
            f.write(
                export.convert(
                    model,
                    precision,
                    "uint8" if precision == "int8" else "float",
                    images,
                    attention_precision=attention,
                )
            )
        paths[variant + "_keras"] = model
    paths["images"] = images
    return paths


@pytest.fixture
def fake_adb(tmp_path, monkeypatch):
    log = tmp_path / "adb_calls.jsonl"
    monkeypatch.setenv("FAKE_ADB_LOG", str(log))
    monkeypatch.setenv("FAKE_ADB_REPLAY", os.path.join(FIXTURES, "benchmark_model_cpu.txt"))
    script = tmp_path / "adb"
    script.write_text(
        f"#!/bin/sh\nexec {sys.executable} {os.path.join(FIXTURES, 'fake_adb.py')} \"$@\"\n"
    )
    script.chmod(0o755)
    return str(script), log
