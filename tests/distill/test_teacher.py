"""The resized teacher: upsamples inside the model, and its trainer weights load back."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from experiments.distill import teacher as teacher_lib


def _tiny_model_fn(num_classes, image_size):
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.layers.Input((image_size, image_size, 3)),
            keras.layers.Conv2D(4, 3, strides=2),
            keras.layers.Flatten(),  # ties the weights to the spatial size the inner model sees
            keras.layers.Dense(num_classes),
        ]
    )


def test_resized_model_runs_the_inner_model_on_upsampled_images(tmp_path):
    model = teacher_lib.resized_model(3, 8, model_fn=_tiny_model_fn, input_size=20)
    assert model.input_shape == (None, 8, 8, 3)
    inner = model.layers[-1]
    assert inner.input_shape == (None, 20, 20, 3)
    images = np.random.RandomState(0).uniform(-1, 1, (2, 8, 8, 3)).astype(np.float32)
    expected = inner(tf.image.resize(images, (20, 20), method="bilinear"))
    np.testing.assert_allclose(model(images), expected, rtol=1e-5, atol=1e-5)

    # what the trainer saves (final.weights.h5) loads through trained_model into the same wrap;
    # weights moved away from the (seeded) initialisation so a failed load shows
    model.set_weights([w + 0.5 for w in model.get_weights()])
    path = str(tmp_path / "final.weights.h5")
    model.save_weights(path)
    loaded = teacher_lib.trained_model(
        weights=path,
        num_classes=3,
        image_size=8,
        model_fn=lambda num_classes, image_size: teacher_lib.resized_model(
            num_classes, image_size, model_fn=_tiny_model_fn, input_size=20
        ),
    )
    np.testing.assert_allclose(loaded(images), model(images), rtol=1e-6, atol=1e-6)


def test_resized_model_rejects_bad_sizes():
    with pytest.raises(ValueError, match="positive"):
        teacher_lib.resized_model(3, 8, model_fn=_tiny_model_fn, input_size=0)
