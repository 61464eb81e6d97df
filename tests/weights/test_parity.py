"""Imported weights give timm's logits: every committed case, at every stored input size.

The cases are timm models at reduced width (through timm's own generator) with randomised BN
statistics and layer scales; see scripts/make_timm_fixtures.py. Full-size models: docs/weights.md.
"""

import os

import numpy as np
import pytest

import mobilenetv4
from mobilenetv4.weights import parity

DIRECTORY = os.environ.get(
    "MNV4_TIMM_FIXTURES", os.path.join(os.path.dirname(__file__), "fixtures")
)
TOLERANCE = 1e-4  # max |logits_keras - logits_timm| in float32


@pytest.mark.parametrize("case", parity.list_cases(DIRECTORY))
def test_logits_equal_timm(case):
    result = parity.check_case(DIRECTORY, case)
    for size, diff in zip(result["sizes"], result["max_abs_diff"]):
        assert diff <= TOLERANCE, f"{case} at {size}: max |diff| {diff:.2e}"


def test_every_model_with_timm_weights_has_a_case():
    covered = {parity.case_model(DIRECTORY, c) for c in parity.list_cases(DIRECTORY)}
    base = {
        "conv_small",
        "conv_medium",
        "conv_large",
        "hybrid_medium",
        "hybrid_large",
        "conv_aa_large",
        "conv_blur_medium",
    }
    assert base <= covered


def _max_diff(model, case):
    return max(
        float(np.abs(model(x, training=False).numpy() - y).max())
        for x, y in zip(case.inputs, case.logits)
    )


def test_anti_aliasing_is_what_makes_the_aa_case_match(case_factory):
    # The same tensors in the plain conv_large: loading succeeds (identical keys and shapes) but
    # the outputs are far off, so the aa case really exercises the pooling path.
    case = case_factory("conv_aa_large_w00625")
    plain = mobilenetv4.create_model("conv_large", weights=case.checkpoint, **case.build_kwargs())
    assert _max_diff(plain, case) > 1e-2


def test_same_padding_does_not_match_timm(small_case):
    # Guards the test itself: TF "same" padding at stride 2 shifts every strided layer.
    model = mobilenetv4.create_model(
        "conv_small", weights=small_case.checkpoint, **small_case.build_kwargs(padding="same")
    )
    assert _max_diff(model, small_case) > 1e-3
