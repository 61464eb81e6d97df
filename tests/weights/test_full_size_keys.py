"""Every full-size model maps onto timm's full-size state dict: same keys, same shapes.

The listings (tests/weights/fixtures/<model>_keys.tsv) are timm 1.0.31's state dicts for the
registered variants, written by scripts/make_timm_fixtures.py; this checks the width variants'
channel rounding and the head sizes at full width without torch or multi-MB checkpoints.
"""

import os

import pytest

import mobilenetv4
from mobilenetv4.weights import timm_targets

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
LISTED = sorted(f[: -len("_keys.tsv")] for f in os.listdir(FIXTURES) if f.endswith("_keys.tsv"))
# Building full-size models takes ~2-5 s each; CI checks the width variants, whose channel
# rounding no committed parity case covers. MNV4_ALL_KEYS=1 checks every model.
WIDTH_VARIANTS = ["conv_small_050", "hybrid_medium_075", "hybrid_large_075"]
MODELS = LISTED if os.environ.get("MNV4_ALL_KEYS") else WIDTH_VARIANTS


def _timm_listing(model):
    listing = {}
    with open(os.path.join(FIXTURES, f"{model}_keys.tsv")) as f:
        for line in f:
            key, shape = line.rstrip("\n").split("\t")
            if not key.endswith("num_batches_tracked"):
                listing[key] = tuple(int(d) for d in shape.split("x")) if shape else ()
    return listing


def test_every_model_is_listed():
    assert set(LISTED) == set(mobilenetv4.list_models())


@pytest.mark.parametrize("model", MODELS)
def test_keys_and_shapes_equal_timm(model):
    ours = {k: t.torch_shape for k, t in timm_targets(mobilenetv4.create_model(model)).items()}
    theirs = _timm_listing(model)
    assert sorted(set(theirs) - set(ours)) == [] and sorted(set(ours) - set(theirs)) == []
    assert {k: s for k, s in ours.items() if theirs[k] != s} == {}
