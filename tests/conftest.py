"""Shared pytest setup: quiet TF logs, deterministic seeds, and the `slow` marker."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes minutes; still runs in CI unless deselected")


@pytest.fixture(autouse=True)
def _seed():
    np.random.seed(0)
    tf.random.set_seed(0)
