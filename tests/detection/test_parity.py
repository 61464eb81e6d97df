"""Table 7 parity (paper Section 7.2): RetinaNet, 256-d separable FPN on P3-P7 and 4-conv 256-d
separable head, 384 px, 91 classes; parameters count every weight (BN moving statistics
included), MACs count convolutions, separable convolutions and attention matmuls.

Model Garden's own MobileNetV4 backbones give the paper's figures (Table 7: 9.79 M / 11.15 M,
5.06 / 5.62 G); ours give exactly those minus the classifier tail Model Garden's backbone computes
but the FPN never reads (1x1 conv 256->960 + BN at stride 32, 1x1 conv 960->1280 + BN after the
pool).
"""

import pytest

SIZE = 384
FIGURES = {  # backbone: (all parameters, MACs)
    "conv_medium": (8_302_807, 5_029_737_984),
    "hybrid_medium": (9_669_879, 5_577_315_840),
    "model_garden:MobileNetV4ConvMedium": (9_786_327, 5_066_356_224),
    "model_garden:MobileNetV4HybridMedium": (11_153_399, 5_613_934_080),
}
FPN_AND_HEAD = (473_840 + 810_071, 288_730_368 + 2_351_492_352)


def _tail(name):
    """(params, MACs) of Model Garden's unused classifier tail for our architecture `name`."""
    from mobilenetv4 import specs

    arch = specs.get(name)
    c_in = arch.stages[-1][-1].filters
    head, features = arch.head_conv.filters, arch.num_features
    params = c_in * head + 4 * head + head * features + 4 * features
    macs = (SIZE // 32) ** 2 * c_in * head + head * features
    return params, macs


def _measure(spec):
    from experiments.detection import detector, summary

    params = detector.load_config("retinanet_mobilenetv4_coco", lock=False)
    assert detector.input_size(params) == (SIZE, SIZE) and params.task.model.num_classes == 91
    (row,) = summary.summarize(params, [spec])
    return row


@pytest.mark.slow  # builds two 384-px detectors and runs each once (about a minute on 2 cores)
@pytest.mark.parametrize(
    "ours,model_garden",
    [
        ("conv_medium", "model_garden:MobileNetV4ConvMedium"),
        ("hybrid_medium", "model_garden:MobileNetV4HybridMedium"),
    ],
)
def test_table7_parameters_and_macs(ours, model_garden):
    a, b = _measure(ours), _measure(model_garden)
    assert (a["total"]["params"], a["total"]["macs"]) == FIGURES[ours]
    assert (b["total"]["params"], b["total"]["macs"]) == FIGURES[model_garden]
    for row in (a, b):  # the same FPN and head around either backbone
        assert (
            row["fpn"]["params"] + row["head"]["params"],
            row["fpn"]["macs"] + row["head"]["macs"],
        ) == FPN_AND_HEAD
    tail_params, tail_macs = _tail(ours)
    assert b["backbone"]["params"] - a["backbone"]["params"] == tail_params
    assert b["backbone"]["macs"] - a["backbone"]["macs"] == tail_macs
    # Rounded as in the paper's Table 7 (Model Garden side): 9.79 M / 5.07 G and 11.15 M / 5.61 G.
    paper = {"conv_medium": (9.79, 5.06), "hybrid_medium": (11.15, 5.62)}[ours]
    assert round(b["total"]["params"] / 1e6, 2) == paper[0]
    assert abs(b["total"]["macs"] / 1e9 - paper[1]) < 0.01
