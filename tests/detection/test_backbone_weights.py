"""ImageNet / timm-converted weights in the detector's backbone: exactly the classifier's features."""

import numpy as np
import pytest
import tf_keras as keras

from mobilenetv4.cli import UserError

SIZE = 96


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The committed timm fixture (conv_small, width 0.125, 10 classes) through mobilenetv4.convert."""
    import os

    from mobilenetv4 import convert

    fixtures = os.path.join(os.path.dirname(__file__), "..", "weights", "fixtures")
    out = str(tmp_path_factory.mktemp("weights") / "conv_small.weights.h5")
    code = convert.main(
        [
            "--model",
            "conv_small",
            "--timm",
            os.path.join(fixtures, "conv_small_w0125.safetensors"),
            "--output",
            out,
            "--width_multiplier",
            "0.125",
        ]
    )
    assert code == 0
    return out


def _backbone(weights, **cfg_overrides):
    from experiments.detection import backbone

    cfg = backbone.MobileNetV4(model_name="conv_small", weights=weights, **cfg_overrides)
    build = backbone.resolve_build(cfg, 0.99, 1e-3)
    return backbone.MobileNetV4Backbone(
        "conv_small", keras.layers.InputSpec(shape=[None, SIZE, SIZE, 3]), weights=weights, **build
    )


def test_loaded_backbone_equals_the_classifiers_feature_model(converted):
    import mobilenetv4

    det = _backbone(converted)
    # The record in the file supplies timm's padding and BN epsilon and the width.
    assert det.get_config()["padding"] == "symmetric" and det.get_config()["bn_epsilon"] == 1e-5
    clf = mobilenetv4.create_model("conv_small", weights=converted, input_shape=(SIZE, SIZE, 3))
    last = {}
    for layer in clf.layers:
        if layer.name.startswith("stage"):
            last[int(layer.name[5])] = layer.name
    reference = keras.Model(clf.input, {str(s + 1): clf.get_layer(last[s]).output for s in last})
    x = np.random.default_rng(0).normal(size=(2, SIZE, SIZE, 3)).astype(np.float32)
    got, want = det(x, training=False), reference(x, training=False)
    assert sorted(got) == ["2", "3", "4", "5"]
    for level in got:
        np.testing.assert_array_equal(got[level].numpy(), want[level].numpy())
    random = _backbone(None, width_multiplier=0.125, padding="symmetric", bn_epsilon=1e-5)
    assert not np.allclose(random(x, training=False)["5"].numpy(), want["5"].numpy())
    assert {k: tuple(v)[1:] for k, v in det.output_specs.items()} == {
        k: tuple(v.shape)[1:] for k, v in want.items()
    }
    assert [tuple(det.output_specs[k])[1] for k in "2345"] == [
        SIZE // 4,
        SIZE // 8,
        SIZE // 16,
        SIZE // 32,
    ]


def test_weights_of_another_model_or_width_are_refused(converted, tmp_path):
    from experiments.detection import backbone

    with pytest.raises(UserError, match="holds weights of 'conv_small', not 'conv_medium'"):
        backbone.resolve_build(
            backbone.MobileNetV4(model_name="conv_medium", weights=converted), 0.99, 1e-3
        )
    with pytest.raises(UserError, match="width_multiplier"):
        backbone.resolve_build(
            backbone.MobileNetV4(model_name="conv_small", weights=converted, width_multiplier=0.5),
            0.99,
            1e-3,
        )
    not_h5 = tmp_path / "w.safetensors"
    not_h5.write_bytes(b"x")
    with pytest.raises(UserError, match="must be a tf_keras .h5"):
        backbone.resolve_build(
            backbone.MobileNetV4(model_name="conv_small", weights=str(not_h5)), 0.99, 1e-3
        )
    garbage = tmp_path / "w.h5"
    garbage.write_bytes(b"not hdf5 at all")
    with pytest.raises(UserError, match="cannot be loaded into conv_small"):
        _backbone(str(garbage), width_multiplier=0.125)
