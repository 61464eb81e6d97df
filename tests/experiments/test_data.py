"""Input pipelines: sources, augmentation outputs, clear errors."""

import os

import numpy as np
import pytest
import tensorflow as tf

from experiments import data
from official.vision.ops import augment


def _write_png(path, value=128):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    img = np.full((20, 24, 3), value, np.uint8)
    tf.io.write_file(path, tf.io.encode_png(img))


def test_digits_split_is_disjoint_and_complete():
    train = data.sklearn_digits_source("train")
    held = data.sklearn_digits_source("eval")
    assert (train.num_examples, held.num_examples) == (1437, 360)
    keys = lambda s: {k.numpy() for k, _, _ in s.read(None, None)}
    assert not keys(train) & keys(held)


def test_train_batches_are_dense_label_vectors_and_mixup_mixes():
    aug = data.Augmentation(
        crop="inception", crop_area_range=(0.5, 1.0), mix_prob=1.0, mix_switch_prob=0.0
    )  # always Mixup
    d = data.ImageClassificationData(data.sklearn_digits_source("train"), None, 16, aug)
    images, labels = next(iter(d.train_dataset(None, 32, epoch=0, seed=0)))
    assert images.shape == (32, 16, 16, 3) and images.dtype == tf.float32
    assert labels.shape == (32, 10)
    np.testing.assert_allclose(labels.numpy().sum(-1), 1.0, rtol=1e-5)
    assert (labels.numpy().max(-1) < 1.0).any()  # soft labels from Mixup


def test_resumed_epoch_replays_identically_when_deterministic():
    aug = data.Augmentation(
        crop="inception",
        randaug_layers=2,
        randaug_magnitude=9,
        randaug_prob=0.5,
        randaug_exclude_ops=("Cutout",),
        mix_prob=0.5,
    )
    d = data.ImageClassificationData(
        data.sklearn_digits_source("train"), None, 16, aug, deterministic=True
    )
    full = [x.numpy() for x, _ in d.train_dataset(None, 16, 1, 7).take(3)]
    resumed = next(iter(d.train_dataset(None, 16, 1, 7, skip_steps=2)))[0]
    np.testing.assert_array_equal(full[2], resumed.numpy())
    other_epoch = next(iter(d.train_dataset(None, 16, 2, 7)))[0]
    assert not np.array_equal(full[0], other_epoch.numpy())


def test_eval_pads_with_zero_weight():
    d = data.ImageClassificationData(
        data.sklearn_digits_source("train"), data.sklearn_digits_source("eval"), 16
    )
    weights = [w.numpy() for _, _, w in d.eval_dataset(None, 64, 6)]
    assert len(weights) == 6 and sum(w.sum() for w in weights) == 360


def test_model_garden_mixup_beta_sampling_is_fixed():
    # Model Garden issue 13490 / PR 13525: lambda must follow Beta(a, a).
    tf.random.set_seed(0)
    lam = augment.MixupAndCutmix._sample_from_beta(0.8, 0.8, [20000]).numpy()
    var = 0.8 * 0.8 / ((1.6**2) * 2.6)
    assert abs(lam.mean() - 0.5) < 0.01
    assert abs(lam.var() - var) < 0.005


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(data.DataError, match="no_such_dir"):
        data.make_source(f"folder:{tmp_path}/no_such_dir", "train")


def test_missing_tfds_manual_dir_is_named(tmp_path):
    with pytest.raises(data.DataError, match="imagenet_tars"):
        data.make_source(
            "tfds:imagenet2012", "train", tfds_manual_dir=str(tmp_path / "imagenet_tars")
        )


def test_unknown_spec_is_named():
    with pytest.raises(data.DataError, match="imgnet"):
        data.make_source("imgnet", "train")


def test_folder_source_and_undecodable_image_named(tmp_path):
    _write_png(str(tmp_path / "cat" / "a.png"))
    _write_png(str(tmp_path / "dog" / "b.png"), 30)
    with open(tmp_path / "dog" / "broken.jpg", "w") as f:
        f.write("this is not an image")
    source = data.make_source(f"folder:{tmp_path}", "train")
    assert (source.num_examples, source.num_classes) == (3, 2)
    d = data.ImageClassificationData(source, None, 8, data.Augmentation(), deterministic=True)
    with pytest.raises(tf.errors.InvalidArgumentError, match="broken.jpg"):
        for _ in d.train_dataset(None, 1, 0, 0):
            pass


def test_tfrecord_source_counts_and_offsets_labels(tmp_path):
    path = str(tmp_path / "train-00000.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for label in (1, 2, 3):
            png = tf.io.encode_png(np.full((4, 4, 3), label, np.uint8)).numpy()
            writer.write(
                tf.train.Example(
                    features=tf.train.Features(
                        feature={
                            "image/encoded": tf.train.Feature(
                                bytes_list=tf.train.BytesList(value=[png])
                            ),
                            "image/class/label": tf.train.Feature(
                                int64_list=tf.train.Int64List(value=[label])
                            ),
                        }
                    )
                ).SerializeToString()
            )
    source = data.tfrecord_source(str(tmp_path / "train-*"), num_classes=3, label_offset=1)
    assert source.num_examples == 3
    labels = [int(l) for _, _, l in source.read(None, None)]
    assert labels == [0, 1, 2]
    with pytest.raises(data.DataError, match="nothing-\\*"):
        data.tfrecord_source(str(tmp_path / "nothing-*"), num_classes=3)


def test_image_classification_data_implements_the_training_data_protocol():
    d = data.ImageClassificationData(
        data.sklearn_digits_source("train"), data.sklearn_digits_source("eval"), 32
    )
    assert isinstance(d, data.TrainingData)
    assert d.spec == "sklearn_digits"
    assert not isinstance(object(), data.TrainingData)


def test_eval_transform_is_the_shared_preprocessing():
    """experiments.data takes its normalisation and eval crop from
    mobilenetv4.preprocessing; the result equals Model Garden's ops it replaced."""
    from official.vision.ops import preprocess_ops

    image = tf.constant(np.random.default_rng(0).integers(0, 256, (40, 52, 3)), tf.uint8)
    ours = data.eval_preprocess(image, 32, 0.875)
    crop = preprocess_ops.center_crop_image(image, 0.875)
    crop = tf.image.resize(crop, [32, 32], method="bilinear")
    theirs = preprocess_ops.normalize_image(
        tf.clip_by_value(crop, 0.0, 255.0),
        offset=preprocess_ops.MEAN_RGB,
        scale=preprocess_ops.STDDEV_RGB,
    )
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=0, atol=1e-5)
