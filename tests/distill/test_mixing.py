"""Dynamic mixing of the distillation datasets and the student input pipeline."""

import collections
import os

import numpy as np
import pytest
import tensorflow as tf

from experiments import data as data_lib
from experiments.distill import augment
from experiments.distill import mixing
from mobilenetv4.cli import UserError


def test_observed_mixing_ratios_within_5_percent(generated):
    ratios = (1, 1, 2)
    parts = [
        mixing.soft_label_dataset(generated, name, seed=i).map(lambda ex, t=i: t)
        for i, name in enumerate(["d1", "d2", "d1"])
    ]
    tags = mixing.mix_datasets(parts, ratios, seed=0).take(10_000)
    counts = collections.Counter(tags.as_numpy_iterator())
    for tag, ratio in enumerate(ratios):
        expected = ratio / sum(ratios)
        observed = counts[tag] / 10_000
        assert abs(observed - expected) <= 0.05 * expected, (tag, observed, expected)


def test_student_batches_are_flipped_stored_images_with_soft_labels(generated, tiny):
    data = mixing.DistillationData(
        generated, datasets=("d1", "d2"), ratios=(1, 1), shuffle_buffer=0, deterministic=True
    )
    assert (data.num_classes, data.image_size, data.num_train_examples) == (tiny.classes, 16, 96)
    assert isinstance(data, data_lib.TrainingData)  # the trainer's data protocol
    assert data.preprocessing == "imagenet"  # recorded in the student's build record
    batches = list(data.train_dataset(None, 16, epoch=0, seed=3))
    assert len(batches) == data.steps_per_epoch(16) == 6
    images, labels = batches[0]
    assert images.shape == (16,) + tiny.size + (3,) and images.dtype == tf.float32
    assert labels.shape == (16, tiny.classes)
    np.testing.assert_allclose(labels.numpy().sum(axis=1), 1.0, rtol=1e-5)
    stored = {}
    for name in ("d1", "d2"):
        for ex in mixing.soft_label_dataset(generated, name, shuffle_buffer=0).take(48):
            stored.setdefault(ex["label"].numpy().tobytes(), []).append(
                augment.normalize(ex["image"]).numpy()
            )
    flipped = 0
    for image, label in zip(images.numpy(), labels.numpy()):
        candidates = stored[label.tobytes()]  # the label identifies the stored example
        same = any(np.array_equal(image, c) for c in candidates)
        mirror = any(np.array_equal(image, c[:, ::-1]) for c in candidates)
        assert same or mirror  # no augmentation but the left-right flip
        flipped += mirror and not same
    assert 0 < flipped < 16
    # deterministic: a resumed epoch (skip_steps) replays the same batches
    again = list(data.train_dataset(None, 16, epoch=0, seed=3, skip_steps=2))
    np.testing.assert_array_equal(again[0][1], batches[2][1])


@pytest.mark.parametrize(
    "ratios, message",
    [
        ((1, 2), "one ratio per dataset"),
        ((-1,), "finite numbers above 0"),
        ((0,), "finite numbers above 0"),
        ((float("nan"),), "finite numbers above 0"),
        ((float("inf"),), "finite numbers above 0"),
    ],
)
def test_bad_ratios_are_rejected(generated, ratios, message):
    parts = [mixing.soft_label_dataset(generated, "d1")]
    with pytest.raises(UserError, match=message):
        mixing.mix_datasets(parts, ratios)


def test_distillation_data_refuses_bad_values_in_one_line(generated):
    for kwargs, message in [
        (dict(ratios=(1, 0)), "finite numbers above 0"),
        (dict(datasets=("d1", "d1"), ratios=(1, 1)), "distinct names"),
        (dict(examples_per_epoch=0), "examples_per_epoch"),
        (dict(shuffle_buffer=-1), "shuffle_buffer"),
        (dict(verify="sometimes"), "verify must be"),
    ]:
        kwargs = {"datasets": ("d1", "d2"), "ratios": (1, 1), **kwargs}
        with pytest.raises(UserError, match=message) as info:
            mixing.DistillationData(generated, **kwargs)
        assert message in str(info.value).splitlines()[0]  # the line a CLI prints
    with pytest.raises(UserError, match="does not exist"):
        mixing.DistillationData(generated + "/missing", datasets=("d1",), ratios=(1,))


def test_student_trains_through_the_trainer(generated, tmp_path):
    """The student's loop is the trainer's (no loop of its own here): a few steps on the mixture,
    with the trainer's checkpoints and final weights."""
    import tf_keras as keras
    from experiments import trainer

    def model_fn(num_classes, image_size):
        keras.utils.set_random_seed(0)
        return keras.Sequential(
            [
                keras.layers.Input((image_size, image_size, 3)),
                keras.layers.Conv2D(4, 3),
                keras.layers.GlobalAveragePooling2D(),
                keras.layers.Dense(num_classes),
            ]
        )

    data = mixing.DistillationData(
        generated, datasets=("d1", "d2"), ratios=(1, 1), shuffle_buffer=0, deterministic=True
    )
    model_dir = str(tmp_path / "student")
    results = trainer.train(
        model_dir,
        data=data,
        model_fn=model_fn,
        batch_size=16,
        epochs=1,
        peak_learning_rate=1e-3,
        max_steps=3,
        checkpoint_every_steps=2,
        mixed_precision="float32",
        log_every_steps=1,
    )
    assert results["step"] == 3
    assert os.path.isfile(os.path.join(model_dir, "final.weights.h5"))
    assert os.listdir(os.path.join(model_dir, "checkpoints"))  # the trainer's checkpoint step
