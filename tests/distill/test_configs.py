"""The distillation gin files parse and bind what they claim (cheap: nothing is built)."""

import os

import gin
import pytest

from experiments import trainer  # noqa: F401  registers the trainer's configurables
from experiments.distill import generate  # noqa: F401
from experiments.distill import mixing  # noqa: F401

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def parsed():
    def parse(name):
        gin.clear_config()
        gin.parse_config_file(os.path.join(ROOT, "gin_configs", name))

    cwd = os.getcwd()
    os.chdir(ROOT)  # `include` lines are relative to the repository root
    yield parse
    os.chdir(cwd)
    gin.clear_config()


@pytest.mark.parametrize("name", ["distill_student_quickstart.gin", "distill_student_imagenet.gin"])
def test_student_configs_mix_1_1_2_with_soft_label_loss(parsed, name):
    parsed(name)
    assert gin.query_parameter("DistillationData.ratios") == (1, 1, 2)
    assert gin.query_parameter("DistillationData.datasets") == ("d1", "d2", "d3")
    assert gin.query_parameter("categorical_crossentropy.label_smoothing") == 0.0
    assert gin.query_parameter("mobilenetv4_model.dropout") > 0


def test_generate_imagenet_config_is_the_papers_d1_d2_d3(parsed):
    parsed("distill_generate_imagenet.gin")
    q = gin.query_parameter
    assert (
        q("d1/DistillDataset.augmentation"),
        q("d1/DistillDataset.randaugment_layers"),
        q("d1/DistillDataset.randaugment_magnitude"),
        q("d1/DistillDataset.replicas"),
    ) == ("randaugment", 2, 9, 500)
    assert (
        q("d2/DistillDataset.augmentation"),
        q("d2/DistillDataset.mixup_alpha"),
        q("d2/DistillDataset.replicas"),
    ) == ("mixup", 1.0, 1000)
    assert (
        q("d3/DistillDataset.randaugment_layers"),
        q("d3/DistillDataset.randaugment_magnitude"),
        q("d3/DistillDataset.replicas"),
    ) == (2, 5, 10)
    assert (q("d3/Selection.threshold"), q("d3/Selection.per_class")) == (0.3, 130000)


def test_generate_quickstart_config_has_three_datasets(parsed):
    parsed("distill_generate_quickstart.gin")
    q = gin.query_parameter
    assert [q(f"d{i}/DistillDataset.augmentation") for i in (1, 2, 3)] == [
        "randaugment",
        "mixup",
        "randaugment",
    ]
    assert q("d3/Selection.threshold") == 0.3


def test_baseline_config_trains_on_labels(parsed):
    parsed("distill_baseline_quickstart.gin")
    q = gin.query_parameter
    assert q("categorical_crossentropy.label_smoothing") == 0.1
    assert q("train.epochs") == 30
    # the quickstart recipe's, not the distilled student's learning rate
    assert q("train.peak_learning_rate") == 0.004
    assert q("input_pipeline.crop_area_range") == (0.6, 1.0)


def test_teacher_config_runs_conv_small_at_64px_on_32px_images(parsed):
    parsed("distill_teacher_quickstart.gin")
    q = gin.query_parameter
    assert q("input_pipeline.image_size") == 32
    assert q("teacher/resized_model.input_size") == 64
    assert q("teacher/mobilenetv4_model.name") == "conv_small"
    assert q("categorical_crossentropy.label_smoothing") == 0.0
    parsed("distill_generate_quickstart.gin")  # generation reads that run directory
    assert (
        q("generate.teacher") == q("d3/Selection.model") == "/tmp/mnv4_distill_quickstart/teacher"
    )
    assert q("generate.image_size") == (32, 32)  # the teacher's record resizes to its 64 px
