"""Small generated data for the distillation tests: 24 random 20x24 images and two 10-class
teachers: a tiny tf_keras model passed as an object (fast, for the in-process tests), and
conv_small handed over as a weights file + build record (the file form the CLI reads)."""

import types

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from experiments.distill import generate as gen

CLASSES = 10
SIZE = (16, 16)
TEACHER_SIZE = (32, 32)


def make_teacher(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.layers.Input(SIZE + (3,)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(CLASSES),
        ]
    )


@pytest.fixture(scope="session")
def teacher_model():
    """The tiny teacher, logits amplified so probabilities are far from uniform."""
    model = make_teacher()
    dense = model.layers[-1]
    dense.set_weights([w * 20.0 for w in dense.get_weights()])
    return model


@pytest.fixture(scope="session")
def source_spec(tmp_path_factory):
    """24 random 20x24 PNG images as a 'tfrecord:' dataset spec of experiments.data."""
    path = str(tmp_path_factory.mktemp("src") / "images.tfrecord")
    images = np.random.RandomState(0).randint(0, 256, (24, 20, 24, 3)).astype(np.uint8)
    with tf.io.TFRecordWriter(path) as writer:
        for i, image in enumerate(images):
            feature = {
                "image/encoded": tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[tf.io.encode_png(image).numpy()])
                ),
                "image/class/label": tf.train.Feature(
                    int64_list=tf.train.Int64List(value=[i % 10])
                ),
            }
            writer.write(
                tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
            )
    return "tfrecord:" + path


def write_teacher(path, seed=0):
    """A registered model (conv_small, 10 classes, trained-at 32x32, the network's minimum) saved as
    weights + build record: the way a teacher is handed over (no model file that could hold code).
    Generation at 16x16 runs it behind a resize to its recorded 32x32."""
    import mobilenetv4
    from mobilenetv4 import build_record, fileio

    keras.utils.set_random_seed(seed)
    model = mobilenetv4.create_model("conv_small", classes=CLASSES, input_shape=TEACHER_SIZE + (3,))
    head = model.get_layer("classifier")  # sharper soft labels
    head.set_weights([w * 5.0 for w in head.get_weights()])
    record = build_record.make("conv_small", build={"classes": CLASSES}, input_size=TEACHER_SIZE)
    with fileio.atomic_path(path) as tmp:
        model.save_weights(tmp)
        build_record.write_h5(tmp, record)
    return path


@pytest.fixture(scope="session")
def teacher_file(tmp_path_factory):
    return write_teacher(str(tmp_path_factory.mktemp("teacher") / "teacher.weights.h5"))


def specs(source_spec, replicas=2):
    return [
        gen.DistillDataset("d1", source_spec, "randaugment", replicas),
        gen.DistillDataset("d2", source_spec, "mixup", replicas),
    ]


@pytest.fixture(scope="session")
def tiny(source_spec):
    """Constants and the dataset specs, for tests (importlib mode forbids importing conftest)."""
    return types.SimpleNamespace(
        classes=CLASSES,
        size=SIZE,
        write_teacher=write_teacher,
        specs=lambda replicas=2: specs(source_spec, replicas),
    )


@pytest.fixture(scope="session")
def generated(tmp_path_factory, source_spec, teacher_model):
    """D1 (RandAugment) and D2 (Mixup), 2 shards each, all probabilities as float16."""
    out = str(tmp_path_factory.mktemp("gen"))
    gen.generate(
        datasets=specs(source_spec),
        teacher=teacher_model,
        output_dir=out,
        classes=CLASSES,
        image_size=SIZE,
        num_shards=2,
        batch_size=8,
    )
    return out
