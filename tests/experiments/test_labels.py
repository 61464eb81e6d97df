"""Issue 16 #4 and #8: labels are checked against num_classes as they stream,
the reader's label offset is exposed (gin and dataset spec), and a corrupt or
truncated TFRecord is one DataError naming the file."""

import hashlib
import os
import sys

import numpy as np
import pytest
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from training_fixtures import bn_free_model  # noqa: E402
from experiments import data as data_lib  # noqa: E402
from experiments import loop  # noqa: E402
from experiments import trainer  # noqa: E402
from mobilenetv4.cli import UserError  # noqa: E402

RUN = dict(
    model_fn=bn_free_model,
    batch_size=10,
    epochs=1,
    peak_learning_rate=1e-3,
    mixed_precision="float32",
    log_every_steps=1000,
)


def _write_records(path, labels):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for label in labels:
            png = tf.io.encode_png(np.full((8, 8, 3), 10 * abs(label), np.uint8)).numpy()
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
    return str(path)


def _sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture
def one_to_ten(tmp_path):
    """Labels 1..10 (twice), the case of issue 16 #4."""
    return _write_records(tmp_path / "train-0.tfrecord", list(range(1, 11)) * 2)


def _labels(source):
    return [int(l) for _, _, l in source.read(None, None)]


def test_label_equal_to_num_classes_stops_training_naming_file_and_label(tmp_path, one_to_ten):
    before = _sha(one_to_ten)
    pipeline = trainer.input_pipeline(
        dataset=f"tfrecord:{tmp_path}/train-*",
        num_classes=10,
        image_size=32,
        deterministic=True,
        shuffle_buffer=1,
    )
    with pytest.raises(data_lib.DataError) as info:
        trainer.train(str(tmp_path / "run"), data=pipeline, **RUN)
    message = str(info.value).splitlines()[0]  # what the CLI prints
    assert "label 10" in message and one_to_ten in message
    assert "0..9" in message and "label_offset" in message
    assert _sha(one_to_ten) == before
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_label_offset_from_gin_makes_the_same_file_train(tmp_path, one_to_ten):
    pipeline = trainer.input_pipeline(
        dataset=f"tfrecord:{tmp_path}/train-*",
        num_classes=10,
        image_size=32,
        label_offset=1,
        deterministic=True,
    )
    assert pipeline.spec == f"tfrecord:{tmp_path}/train-*;num_classes=10;label_offset=1"
    assert sorted(_labels(pipeline.train_source)) == sorted(list(range(10)) * 2)
    results = trainer.train(str(tmp_path / "run"), data=pipeline, **RUN)
    assert results["step"] == 2


def test_label_offset_and_num_classes_in_the_spec(tmp_path, one_to_ten):
    source = data_lib.make_source(
        f"tfrecord:{tmp_path}/train-*;num_classes=10;label_offset=1", "train"
    )
    assert source.num_classes == 10 and source.label_offset == 1
    assert _labels(source) == list(range(10)) * 2
    # the spec wins over the argument, and round-trips
    again = data_lib.make_source(source.spec, "train", label_offset=5)
    assert again.spec == source.spec and _labels(again) == _labels(source)


def test_offset_below_zero_is_named(tmp_path):
    path = _write_records(tmp_path / "zero.tfrecord", [0, 1, 2])
    source = data_lib.make_source(f"tfrecord:{path};num_classes=3;label_offset=1", "train")
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        _labels(source)
    line = loop._essential(info.value.message)  # pylint: disable=protected-access
    assert line.startswith(f"label -1 (stored 0 minus label_offset 1) of {path} is outside 0..2"), (
        line
    )


def test_negative_stored_label_is_named(tmp_path):
    path = _write_records(tmp_path / "neg.tfrecord", [0, -3, 1])
    source = data_lib.make_source(f"tfrecord:{path}", "train", num_classes=3)
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        _labels(source)
    line = loop._essential(info.value.message)  # pylint: disable=protected-access
    assert line.startswith(f"label -3 of {path} is outside 0..2"), line


def test_valid_labels_stream_unchanged(tmp_path):
    path = _write_records(tmp_path / "ok.tfrecord", [2, 0, 1])
    source = data_lib.make_source(f"tfrecord:{path}", "train", num_classes=3)
    assert _labels(source) == [2, 0, 1]
    assert source.spec == f"tfrecord:{path};num_classes=3"


@pytest.mark.parametrize(
    "spec,word",
    [
        ("tfrecord:/x/*;labels=1", "labels=1"),
        ("tfrecord:/x/*;label_offset=one", "label_offset"),
        ("tfrecord:/x/*;num_classes=0", "num_classes"),
    ],
)
def test_bad_spec_options_are_named(spec, word):
    with pytest.raises(data_lib.DataError, match=word):
        data_lib.make_source(spec, "train")


def test_data_error_is_a_user_error():
    assert issubclass(data_lib.DataError, UserError)
    assert issubclass(data_lib.DataError, ValueError)  # old handlers still work


def _truncated(tmp_path, name="bad.tfrecord"):
    good = _write_records(tmp_path / "good.tfrecord", [0, 1] * 5)
    raw = open(good, "rb").read()
    bad = tmp_path / name
    bad.write_bytes(raw[:-9])
    return good, str(bad)


def test_truncated_tfrecord_is_named_when_counted(tmp_path):
    _, bad = _truncated(tmp_path)
    before = _sha(bad)
    with pytest.raises(data_lib.DataError) as info:
        data_lib.make_source(f"tfrecord:{tmp_path}/*.tfrecord", "train", num_classes=2)
    assert bad in str(info.value) and "corrupt or truncated" in str(info.value)
    assert "\n" not in str(info.value)  # raised outside gin: exactly one line
    assert _sha(bad) == before


def test_garbage_tfrecord_is_named(tmp_path):
    path = tmp_path / "garbage.tfrecord"
    path.write_bytes(b"this is not a TFRecord file at all " * 4)
    with pytest.raises(data_lib.DataError, match="garbage.tfrecord"):
        data_lib.make_source(f"tfrecord:{path}", "train", num_classes=2)


def test_corrupt_tfrecord_during_training_is_named(tmp_path):
    """With num_train_examples given the files are not counted up front: the
    read fails mid-training and the trainer finds the corrupt file."""
    _, bad = _truncated(tmp_path, "z-bad.tfrecord")
    raw = bytearray(open(tmp_path / "good.tfrecord", "rb").read())
    raw[20] ^= 0xFF  # a flipped byte in the first record's payload
    flipped = tmp_path / "flipped.tfrecord"
    flipped.write_bytes(bytes(raw))
    os.remove(bad)
    pipeline = trainer.input_pipeline(
        dataset=f"tfrecord:{tmp_path}/*.tfrecord",
        num_classes=2,
        image_size=32,
        num_train_examples=20,
        deterministic=True,
    )
    with pytest.raises(data_lib.DataError) as info:
        trainer.train(str(tmp_path / "run"), data=pipeline, **RUN)
    assert str(flipped) in str(info.value).splitlines()[0], str(info.value)
