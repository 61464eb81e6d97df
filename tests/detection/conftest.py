"""Shared fixtures of the detection tests: a tiny digits detection set (made once per session)."""

import os

import pytest


@pytest.fixture(scope="session")
def tiny_digits(tmp_path_factory):
    """24 train + 8 val canvases of 128 px, seed 0, in a session-wide folder."""
    from experiments.detection import digits

    out = str(tmp_path_factory.mktemp("digits_det"))
    digits.make(out, seed=0, num_train=24, num_val=8, num_train_shards=2, log=lambda *_: None)
    return out


@pytest.fixture
def digits_config(tiny_digits):
    return os.path.join(tiny_digits, "experiment.yaml")
