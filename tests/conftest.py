"""Shared pytest setup: quiet TF logs, deterministic seeds, and the `slow` marker."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# `pytest -n 2` fills both CI cores; OpenBLAS's own threads then spin against the other worker (a
# 128x2048 SVD under that load: 4.2 s with 2 threads, 0.04 s with 1). One BLAS thread per process,
# here and in the commands the tests start (they inherit the environment).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
import threadpoolctl  # noqa: E402

threadpoolctl.threadpool_limits(1, user_api="blas")  # in case a plugin imported numpy first


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes minutes; still runs in CI unless deselected")


@pytest.fixture(autouse=True)
def _seed():
    np.random.seed(0)
    tf.random.set_seed(0)
