"""Fixtures of the weight-import tests, built on the committed timm cases in tests/weights/fixtures
(written by scripts/make_timm_fixtures.py)."""

import json
import os
import shutil

import numpy as np
import pytest

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


class Case:
    """One committed timm case: checkpoint path, build metadata, inputs and timm's logits."""

    def __init__(self, name, directory=FIXTURES):
        self.name = name
        self.checkpoint = os.path.join(directory, name + ".safetensors")
        with open(os.path.join(directory, name + ".json")) as f:
            self.meta = json.load(f)
        arrays = np.load(os.path.join(directory, name + ".npz"), allow_pickle=False)
        self.inputs = [
            arrays[f"input_{i}"].astype(np.float32) for i in range(len(self.meta["sizes"]))
        ]
        self.logits = [arrays[f"logits_{i}"] for i in range(len(self.meta["sizes"]))]

    def build_kwargs(self, **overrides):
        return {
            "width_multiplier": self.meta["width_multiplier"],
            "classes": self.meta["classes"],
            "input_shape": (None, None, 3),
            **overrides,
        }


@pytest.fixture
def fixtures_dir():
    return FIXTURES


@pytest.fixture
def small_case():
    """conv_small at width 0.125 with 10 classes: the cheapest case."""
    return Case("conv_small_w0125")


@pytest.fixture
def case_factory():
    return Case


@pytest.fixture
def small_checkpoint_copy(tmp_path, small_case):
    """A private copy of the small case's checkpoint (tests may rename or damage it)."""
    path = tmp_path / "checkpoint.safetensors"
    shutil.copy(small_case.checkpoint, path)
    return str(path)
