"""The decomposition row of tflite.compare_model_garden: a hybrid without its attention blocks."""
from tflite import compare_model_garden


def test_without_attention_removes_exactly_the_mobile_mqa_blocks():
    import mobilenetv4
    from mobilenetv4 import costs
    shape = (64, 64, 3)
    hybrid = mobilenetv4.create_model("hybrid_medium", input_shape=shape)
    conv_part = compare_model_garden.without_attention("hybrid_medium", shape)
    attention = [l for l in hybrid.submodules if isinstance(l, mobilenetv4.layers.MobileAttentionBlock)]
    assert len(attention) == 8
    assert not [l for l in conv_part.submodules
                if isinstance(l, mobilenetv4.layers.MobileAttentionBlock)]
    # Everything else is kept: the parameters differ by exactly the attention blocks' own.
    removed = sum(costs.count_params(block) for block in attention)
    assert costs.count_params(hybrid) - costs.count_params(conv_part) == removed > 0
    assert conv_part.output_shape == hybrid.output_shape
