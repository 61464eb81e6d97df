"""Stand-in weights for latency exports without a checkpoint (`export --stand_in_weights N`): every
BatchNorm of backbone, FPN and head re-estimated on real images, written as a checkpoint Model
Garden's export reads."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from mobilenetv4.cli import UserError

SMALL = (
    "task.model.head.num_filters=16,task.model.decoder.fpn.num_filters=16,"
    "task.model.head.num_convs=1"
)


def test_statistics_are_the_cumulative_average_of_the_batches():
    from tflite import models

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.BatchNormalization(momentum=0.99)(inputs))
    rng = np.random.default_rng(0)
    batches = [rng.normal(loc, 1.0, (4, 3)).astype(np.float32) for loc in (-2.0, 1.0, 4.0)]
    models.stand_in_statistics(model, np.concatenate(batches), batch_size=4, num_batches=3)
    bn = model.layers[-1]
    np.testing.assert_allclose(
        bn.moving_mean.numpy(), np.mean([b.mean(0) for b in batches], 0), rtol=1e-5, atol=1e-6
    )
    assert bn.momentum == 0.99  # restored


def test_checkpoint_covers_every_batchnorm_and_restores_into_the_detector(tmp_path, digits_config):
    from experiments.detection import detector, export

    params = detector.load_config(
        "retinanet_mobilenetv4_digits", [digits_config], SMALL, lock=False
    )
    prefix = export.write_stand_in_checkpoint(params, str(tmp_path / "ckpt"), 6, batch_size=3)
    fresh = detector.build_model(params)
    bns = [m for m in fresh.submodules if isinstance(m, keras.layers.BatchNormalization)]
    for part in (fresh.backbone, fresh.decoder, fresh.head):  # BNs in all three parts
        assert any(isinstance(m, keras.layers.BatchNormalization) for m in part.submodules)
    before = [(bn.moving_mean.numpy(), bn.moving_variance.numpy()) for bn in bns]
    # What Model Garden's export does with --checkpoint: every object of the model restored.
    tf.train.Checkpoint(model=fresh).read(prefix).assert_existing_objects_matched()
    for bn, (mean, var) in zip(bns, before):
        assert not np.allclose(bn.moving_mean.numpy(), mean), bn.name
        assert not np.allclose(bn.moving_variance.numpy(), var), bn.name
    assert export.weights_text(None, 6) == (
        "stand-in (kernels preconditioned and BN re-estimated on 6 images, layer scale ~1)"
    )


def test_stand_in_and_checkpoint_exclude_each_other(tmp_path, digits_config):
    from experiments.detection import detector, export

    params = detector.load_config("retinanet_mobilenetv4_digits", [digits_config], lock=False)
    with pytest.raises(UserError, match="either --checkpoint or --stand_in_weights"):
        export.export(params, str(tmp_path / "out"), checkpoint="x", stand_in_images=4)
    assert not (tmp_path / "out").exists()
