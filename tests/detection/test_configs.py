"""Registration of the backbone and the experiments with Model Garden, and the paper's recipe."""

import importlib
import subprocess
import sys

import pytest

from mobilenetv4.cli import UserError


def test_import_mobilenetv4_does_not_import_model_garden():
    code = (
        "import sys, mobilenetv4; mobilenetv4.create_model; import mobilenetv4.costs; "
        "print('official' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_registration_is_idempotent_and_uses_model_garden_keys():
    import experiments.detection
    from experiments.detection import backbone, configs
    from official.core import exp_factory
    from official.vision.modeling.backbones import factory

    importlib.reload(experiments.detection)  # a second import registers nothing twice
    backbone.register()
    configs.register()
    assert factory._REGISTERED_BACKBONE_CLS["mobilenetv4"] is backbone.build_mobilenetv4
    for name in configs.experiment_names():
        assert exp_factory.get_exp_config(name).task.model.backbone.type == "mobilenetv4"
    assert "retinanet_mobilenetv4_hybrid_medium_coco" in configs.experiment_names()
    assert list(backbone.LEVELS) == ["2", "3", "4", "5"]


def test_coco_config_is_the_papers_recipe():
    from experiments.detection import detector

    p = detector.load_config("retinanet_mobilenetv4_coco")
    m = p.task.model
    assert m.backbone.mobilenetv4.model_name == "conv_medium"
    assert m.backbone.mobilenetv4.stochastic_depth_rate == 0.2
    assert m.input_size == [384, 384, 3] and (m.min_level, m.max_level) == (3, 7)
    assert m.decoder.type == "fpn" and m.decoder.fpn.num_filters == 256
    assert m.decoder.fpn.use_separable_conv
    assert (m.head.num_convs, m.head.num_filters, m.head.use_separable_conv) == (4, 256, True)
    assert m.num_classes == 91
    assert p.task.losses.l2_weight_decay == 3e-5
    data = p.task.train_data
    assert data.global_batch_size == 2048 and data.parser.aug_rand_hflip
    assert data.parser.aug_scale_min < 1.0 < data.parser.aug_scale_max
    assert data.parser.aug_type.type == "randaug"
    assert set(data.parser.aug_type.randaug.exclude_ops) == {"ShearX", "ShearY", "Rotate"}
    opt = p.trainer.optimizer_config
    steps_per_epoch = 118287 // 2048
    assert opt.optimizer.type == "adam" and opt.learning_rate.type == "cosine"
    assert opt.warmup.linear.warmup_steps == 24 * steps_per_epoch
    assert p.trainer.train_steps == opt.learning_rate.cosine.decay_steps == 600 * steps_per_epoch
    hm = detector.load_config("retinanet_mobilenetv4_hybrid_medium_coco")
    assert hm.task.model.backbone.mobilenetv4.model_name == "hybrid_medium"


def test_model_garden_normalises_with_our_imagenet_constants():
    from official.vision.ops import preprocess_ops

    from mobilenetv4 import preprocessing

    mean, std = preprocessing.mean_std_255("imagenet")
    assert tuple(preprocess_ops.MEAN_RGB) == pytest.approx(mean)
    assert tuple(preprocess_ops.STDDEV_RGB) == pytest.approx(std)


@pytest.mark.parametrize(
    "override,message",
    [
        ("task.model.backbone.mobilenetv4.no_such_field=1", "unknown config field"),
        ("task.model.backbone.mobilenetv4.model_name=conv_mediun", "did you mean 'conv_medium'"),
        ("task.model.backbone.mobilenetv4.attention_type=flash", "attention_type"),
        ("task.model.backbone.mobilenetv4.weights=/nonexistent/w.h5", "do not exist"),
    ],
)
def test_bad_configs_are_one_line_user_errors(override, message):
    from experiments.detection import detector

    with pytest.raises(UserError, match=message) as info:
        detector.load_config("retinanet_mobilenetv4_digits", params_override=override)
    assert "\n" not in str(info.value)


def test_unknown_experiment_lists_ours():
    from experiments.detection import detector

    with pytest.raises(UserError, match="retinanet_mobilenetv4_coco"):
        detector.load_config("retinanet_mobilenetv4_cocoa")
