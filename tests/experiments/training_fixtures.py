"""Shared helpers: a fixed in-memory dataset with the trainer's data interface."""

import os
import sys

import numpy as np
import tensorflow as tf
import tf_keras as keras

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


class ArrayData:
    """Fixed images and one-hot labels, served in order (no augmentation).

    Implements the interface the trainer needs (as a distillation dataset
    would): num_classes, image_size, num_train_examples, num_eval_examples,
    steps_per_epoch, train_dataset, eval_dataset.
    """

    def __init__(self, images, labels, num_classes):
        self.images = np.asarray(images, np.float32)
        self.labels = np.eye(num_classes, dtype=np.float32)[labels]
        self.num_classes = num_classes
        self.image_size = self.images.shape[1]
        self.num_train_examples = len(self.images)
        self.num_eval_examples = len(self.images)

    def steps_per_epoch(self, global_batch):
        return self.num_train_examples // global_batch

    def train_dataset(self, ctx, per_replica_batch, epoch, seed, skip_steps=0):
        replicas = ctx.num_replicas_in_sync if ctx else 1
        ds = tf.data.Dataset.from_tensor_slices((self.images, self.labels))
        ds = ds.batch(per_replica_batch, drop_remainder=True)
        return ds.skip(skip_steps * replicas)

    def eval_dataset(self, ctx, per_replica_batch, num_batches):
        ds = tf.data.Dataset.from_tensor_slices(
            (self.images, self.labels, np.ones(len(self.images), np.float32))
        )
        return ds.batch(per_replica_batch).take(num_batches)


def random_array_data(n=32, size=16, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    return ArrayData(rng.normal(size=(n, size, size, 3)), rng.integers(0, classes, n), classes)


def bn_free_model(num_classes, image_size):
    """Small conv net without BatchNorm: per-replica batch statistics would make
    1 and 2 replicas differ by design, which is not what the replica test checks."""
    inputs = keras.Input((image_size, image_size, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes)(x))
