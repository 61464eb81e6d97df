"""Each Table 10 gin file, parsed, equals the paper's table field by field."""

import os

import gin
import pytest

from experiments.train import parse_gin

GIN_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "gin_configs")

# Paper Table 10, transcribed column by column ('-' is None).
FIELDS = [
    "Batch size",
    "Peak learning rate",
    "Cosine decay alpha",
    "Cosine decay epochs",
    "Warm-up epochs",
    "Training epochs",
    "AdamW weight decay",
    "AdamW beta_1",
    "AdamW beta_2",
    "AdamW epsilon",
    "EMA decay",
    "L2-regularization",
    "Gradient clipping",
    "Label smoothing",
    "Dropout",
    "Peak Stochastic Depth drop rate",
    "RandAugment probability",
    "RandAugment layers",
    "RandAugment magnitude",
    "RandAugment excluded ops",
    "Mixup/Cutmix probability",
    "Mixup alpha",
    "Cutmix alpha",
    "Mixup/Cutmix switch probability",
]
TABLE_10 = {
    "Conv-S": [
        4096,
        0.002,
        0.0,
        9600,
        5,
        9600,
        0.01,
        0.6,
        0.999,
        1e-6,
        0.9999,
        1e-5,
        None,
        0.1,
        0.3,
        0,
        0.5,
        2,
        9,
        ["Cutout"],
        None,
        None,
        None,
        None,
    ],
    "Conv-M": [
        4096,
        0.004,
        0.0,
        500,
        5,
        500,
        0.1,
        0.9,
        0.999,
        1e-7,
        None,
        None,
        None,
        0.1,
        0.2,
        0.075,
        0.7,
        2,
        15,
        ["Cutout"],
        None,
        None,
        None,
        None,
    ],
    "Hybrid-M": [
        16384,
        0.016,
        0.0,
        500,
        20,
        500,
        0.1,
        0.9,
        0.999,
        1e-7,
        None,
        None,
        None,
        0.1,
        0.2,
        0.075,
        0.7,
        2,
        15,
        ["Cutout"],
        None,
        None,
        None,
        None,
    ],
    "Conv-L": [
        16384,
        0.004,
        0.0,
        500,
        20,
        500,
        0.2,
        0.9,
        0.999,
        1e-7,
        None,
        None,
        None,
        0.1,
        0.2,
        0.35,
        1.0,
        2,
        15,
        ["Cutout"],
        0.3,
        0.8,
        1.0,
        0.5,
    ],
    "Hybrid-L": [
        16384,
        0.01,
        0.001,
        500,
        20,
        500,
        0.2,
        0.9,
        0.999,
        1e-7,
        None,
        None,
        None,
        0.1,
        0.2,
        0.35,
        1.0,
        2,
        15,
        ["Cutout"],
        0.3,
        0.8,
        1.0,
        0.5,
    ],
}
# Column -> (gin file, model name, resolution of paper Tables 11-15).
COLUMNS = {
    "Conv-S": ("conv_small", 224),
    "Conv-M": ("conv_medium", 256),
    "Hybrid-M": ("hybrid_medium", 256),
    "Conv-L": ("conv_large", 384),
    "Hybrid-L": ("hybrid_large", 384),
}
BINDINGS = {
    "Batch size": "train.batch_size",
    "Peak learning rate": "train.peak_learning_rate",
    "Cosine decay alpha": "train.cosine_decay_alpha",
    "Cosine decay epochs": "train.cosine_decay_epochs",
    "Warm-up epochs": "train.warmup_epochs",
    "Training epochs": "train.epochs",
    "AdamW weight decay": "train.weight_decay",
    "AdamW beta_1": "train.beta_1",
    "AdamW beta_2": "train.beta_2",
    "AdamW epsilon": "train.epsilon",
    "EMA decay": "train.ema_decay",
    "L2-regularization": "mobilenetv4_model.l2",
    "Gradient clipping": "train.gradient_clip_norm",
    "Label smoothing": "categorical_crossentropy.label_smoothing",
    "Dropout": "mobilenetv4_model.dropout",
    "Peak Stochastic Depth drop rate": "mobilenetv4_model.stochastic_depth_rate",
    "RandAugment probability": "input_pipeline.randaug_prob",
    "RandAugment layers": "input_pipeline.randaug_layers",
    "RandAugment magnitude": "input_pipeline.randaug_magnitude",
    "RandAugment excluded ops": "input_pipeline.randaug_exclude_ops",
    "Mixup/Cutmix probability": "input_pipeline.mix_prob",
    "Mixup alpha": "input_pipeline.mixup_alpha",
    "Cutmix alpha": "input_pipeline.cutmix_alpha",
    "Mixup/Cutmix switch probability": "input_pipeline.mix_switch_prob",
}
# '-' disables the feature: None for options, 0 for rates and probabilities.
DISABLED = (None, 0, 0.0)


@pytest.fixture(autouse=True)
def clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


@pytest.mark.parametrize("column", sorted(TABLE_10))
def test_recipe_matches_table_10(column):
    name, resolution = COLUMNS[column]
    parse_gin([os.path.join(GIN_DIR, name + ".gin")], [])
    assert gin.query_parameter("mobilenetv4_model.name") == name
    assert gin.query_parameter("input_pipeline.image_size") == resolution
    assert gin.query_parameter("input_pipeline.dataset") == "tfds:imagenet2012"
    assert gin.query_parameter("input_pipeline.crop") == "inception"
    assert gin.query_parameter("input_pipeline.flip") is True
    mismatches = []
    for field, expected in zip(FIELDS, TABLE_10[column]):
        got = gin.query_parameter(BINDINGS[field])
        if isinstance(got, tuple):
            got = list(got)
        ok = got in DISABLED if expected is None else (got == expected and type(got) is not bool)
        if isinstance(expected, float) and expected and isinstance(got, float):
            ok = abs(got - expected) <= 1e-12 * abs(expected)
        if not ok:
            mismatches.append(f"{field}: gin {got!r} != paper {expected!r}")
    assert not mismatches, f"{name}.gin: " + "; ".join(mismatches)


def test_every_recipe_is_checked():
    # distill_* and nas_* configure other jobs (tests/distill, tests/nas parse them).
    recipes = {
        f[:-4]
        for f in os.listdir(GIN_DIR)
        if f.endswith(".gin") and not f.startswith(("distill_", "nas_"))
    }
    assert recipes == {n for n, _ in COLUMNS.values()} | {"quickstart", "quick_trial"}


def test_quick_trial_shortens_the_quickstart():
    parse_gin(
        [os.path.join(GIN_DIR, "quickstart.gin"), os.path.join(GIN_DIR, "quick_trial.gin")], []
    )
    assert gin.query_parameter("train.epochs") == 8
    assert gin.query_parameter("train.ema_decay") == 0.9
    assert gin.query_parameter("mobilenetv4_model.bn_momentum") == 0.9  # BN statistics keep up
    assert gin.query_parameter("input_pipeline.dataset") == "sklearn_digits"
    # the same run every time (the README-path test checks INT8 top-1 within 1 point of it)
    assert gin.query_parameter("input_pipeline.deterministic") is True


def test_unknown_binding_is_named():
    with pytest.raises(ValueError, match="learning_rat"):
        parse_gin([os.path.join(GIN_DIR, "quickstart.gin")], ["train.learning_rat = 0.1"])


def test_missing_gin_file_is_named():
    with pytest.raises(ValueError, match="nope.gin"):
        parse_gin(["nope.gin"], [])
