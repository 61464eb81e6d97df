"""The reward split: a validation split carved out of the training split, held apart from the eval
split, deterministic by seed; the search takes its rewards from it."""

import pytest

from experiments import data as data_lib
from experiments import trainer
from experiments.nas import tunas
from mobilenetv4.cli import UserError


def _keys(source):
    return {k.numpy() for k, _, _ in source.read(None, 0)}


def test_validation_is_carved_out_of_training_and_eval_is_untouched():
    plain = trainer.input_pipeline(dataset="sklearn_digits", image_size=32)
    held = trainer.input_pipeline(dataset="sklearn_digits", image_size=32, validation_fraction=0.2)
    train, val = _keys(held.train_source), _keys(held.validation_source)
    assert not train & val  # the shared weights never train on a reward image
    assert train | val == _keys(plain.train_source)
    assert (held.num_train_examples, held.num_validation_examples) == (len(train), len(val))
    assert 0.15 < len(val) / plain.num_train_examples < 0.25
    assert _keys(held.eval_source) == _keys(plain.eval_source)  # eval split untouched
    assert tunas.reward_split(held) == ("validation", len(val))
    assert tunas.reward_split(plain) == ("eval", plain.num_eval_examples)
    same = trainer.input_pipeline(dataset="sklearn_digits", image_size=32, validation_fraction=0.2)
    assert _keys(same.validation_source) == val  # deterministic
    other = data_lib.hold_out(plain.train_source, 0.2, seed=1)[1]
    assert _keys(other) != val  # ... by seed


def test_bad_validation_options_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="validation_fraction must be in"):
        trainer.input_pipeline(dataset="sklearn_digits", validation_fraction=1.0)
    with pytest.raises(UserError, match="not both"):
        trainer.input_pipeline(
            dataset="sklearn_digits", validation_fraction=0.1, validation_dataset="sklearn_digits"
        )
    (tmp_path / "a.tfrecord").write_bytes(b"")
    source = data_lib.tfrecord_source(str(tmp_path / "*.tfrecord"), 10, num_examples=100)
    with pytest.raises(UserError, match="TFRecord keys are file names"):
        data_lib.hold_out(source, 0.1)
