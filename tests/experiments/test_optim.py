"""Schedule, AdamW weight-decay exclusion and EMA arithmetic."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from experiments import optim


def test_warmup_then_cosine_to_alpha():
    s = optim.WarmupCosineDecay(peak=0.01, decay_steps=100, warmup_steps=10, alpha=0.001)
    cos = lambda i: 0.01 * (0.999 * 0.5 * (1 + np.cos(np.pi * i / 100)) + 0.001)
    lr = [float(s(i)) for i in (0, 5, 10, 50, 100, 500)]
    # Linear ramp to the cosine's value at the end of warm-up, then the cosine
    # (counted from step 0) down to alpha * peak at decay_steps, flat after.
    np.testing.assert_allclose(
        lr, [0.0, cos(10) / 2, cos(10), 0.01 * (0.999 * 0.5 + 0.001), 1e-5, 1e-5], rtol=1e-5
    )


def test_bad_schedule_is_explained():
    with pytest.raises(ValueError, match="decay_steps"):
        optim.WarmupCosineDecay(peak=0.1, decay_steps=0)


def _model():
    inputs = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(2, 3, use_bias=False, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="dense")(x))


def test_adamw_decays_kernels_only():
    model = _model()
    opt = optim.adamw(
        model, learning_rate=0.1, weight_decay=0.5, beta_1=0.9, beta_2=0.999, epsilon=1e-7
    )
    before = {v.name: v.numpy().copy() for v in model.trainable_variables}
    # Zero gradients: only the decoupled decay can move a variable.
    opt.apply_gradients((tf.zeros_like(v), v) for v in model.trainable_variables)
    moved = {
        v.name for v in model.trainable_variables if not np.allclose(v.numpy(), before[v.name])
    }
    assert moved == {"conv/kernel:0", "dense/kernel:0"}
    kernel = model.get_layer("dense").kernel
    np.testing.assert_allclose(
        kernel.numpy(), before["dense/kernel:0"] * (1 - 0.1 * 0.5), rtol=1e-6, atol=1e-6
    )


def test_ema_average_and_swap():
    model = _model()
    ema = optim.EMA(model, decay=0.9, dynamic=False)
    kernel = model.get_layer("dense").kernel
    start = kernel.numpy().copy()
    kernel.assign(start + 1.0)
    ema.update()
    expected = 0.9 * start + 0.1 * (start + 1.0)
    ema.swap()
    np.testing.assert_allclose(kernel.numpy(), expected, rtol=1e-6, atol=1e-6)
    ema.swap()
    np.testing.assert_allclose(kernel.numpy(), start + 1.0, rtol=1e-6, atol=1e-6)


def test_ema_dynamic_decay_starts_low():
    model = _model()
    ema = optim.EMA(model, decay=0.9999)
    kernel = model.get_layer("dense").kernel
    start = kernel.numpy().copy()
    kernel.assign(start + 1.0)
    ema.update()  # first update uses min(0.9999, 1/10)
    ema.swap()
    np.testing.assert_allclose(kernel.numpy(), start + 0.9, rtol=1e-5, atol=1e-6)
