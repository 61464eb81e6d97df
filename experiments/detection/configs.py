"""Model Garden experiments with our MobileNetV4 backbones (registered with `exp_factory`).

  retinanet_mobilenetv4_coco           the paper's Section 7.2 recipe with MNv4-Conv-M (Table 7)
  retinanet_mobilenetv4_<name>_coco    the same recipe for every registered backbone
                                       (conv_small, conv_medium, hybrid_medium, conv_large, ...)
  retinanet_mobilenetv4_digits         the same model family on the offline digits detection set
                                       (`python -m experiments.detection.digits`), CPU sized

From the paper (Section 7.2): RetinaNet, 256-d FPN on P3-P7 and a 4-conv 256-d head, both with
depthwise-separable convolutions; 384 px; random horizontal flip, random scale and RandAugment
without ShearX/ShearY/Rotate; batch 2048, Adam, L2 weight decay 3e-5, cosine learning rate with 24
warm-up epochs, 600 epochs; stochastic depth 0.2 in the backbone (linear in depth, as in
classification).

Where the paper is silent, we chose (each choice is also noted at its line below):
  - Adam peak learning rate 0.004 at batch 2048 ("tuned per model" in the paper): the peak the
    paper's own Table 10 uses for MNv4-Conv-M with AdamW at batch 4096; a detector with an
    ImageNet-initialised backbone tolerates the same step size at half the batch. Linear warm-up
    from 0 over the 24 epochs, cosine to 0 at 600 epochs.
  - Random scale 0.1-2.0: Model Garden's mobile RetinaNet recipe (`retinanet_mobile_coco`: same
    384 px, 600 epochs and L2 3e-5 as the paper).
  - RandAugment: 2 layers, magnitude 10 (Model Garden's and RandAugment's defaults), Model
    Garden's box-aware operations, ShearX/ShearY/Rotate excluded as the paper says.
  - Anchors: 3 scales x 3 aspect ratios, anchor size 3 (Model Garden's mobile detectors: smaller
    anchors than ResNet RetinaNet's 4 suit the small objects of 384 px images).
  - Activation of FPN and head: ReLU, the MobileNetV4 backbones' own activation (one activation in
    the graph; cheap on every Table 7 target). BN momentum 0.99, epsilon 1e-3 (Model Garden's).
  - 91 classes (COCO's id space, Model Garden's convention), pre-NMS score threshold 0.05 and 100
    detections (Model Garden's defaults, the COCO protocol).
"""

from __future__ import annotations

import os

from official.core import config_definitions as cfg
from official.core import exp_factory
from official.modeling import optimization
from official.vision.configs import common, decoders
from official.vision.configs import retinanet as mg_retinanet

from experiments.detection import backbone as backbone_lib

COCO_INPUT_PATH_BASE = "coco"
COCO_TRAIN_EXAMPLES = 118287
COCO_VAL_EXAMPLES = 5000
PAPER = dict(
    input_size=384,
    batch_size=2048,
    epochs=600,
    warmup_epochs=24,
    l2=3e-5,
    stochastic_depth=0.2,
    fpn_filters=256,
    head_filters=256,
    head_convs=4,
)
ADAM_LEARNING_RATE = 0.004  # chosen: see the module docstring
RANDAUG_EXCLUDE = ["ShearX", "ShearY", "Rotate"]  # the paper: these hurt small-object AP

# The digits task (experiments.detection.digits): 10 classes with ids 1..10 (digit d -> d + 1;
# 0 is background in Model Garden's RetinaNet), so num_classes = 11.
DIGITS_NUM_CLASSES = 11
DIGITS_INPUT_SIZE = 128


def _model(
    name: str,
    *,
    input_size: int,
    num_classes: int,
    stochastic_depth: float,
    fpn_filters: int,
    head_filters: int,
    head_convs: int,
    pre_nms_score_threshold: float = 0.05,
) -> mg_retinanet.RetinaNet:
    return mg_retinanet.RetinaNet(
        num_classes=num_classes,
        input_size=[input_size, input_size, 3],
        min_level=3,
        max_level=7,  # P3-P7: P3-P5 from the backbone, P6/P7 by the FPN
        backbone=backbone_lib.Backbone(
            type=backbone_lib.KEY,
            mobilenetv4=backbone_lib.MobileNetV4(
                model_name=name, stochastic_depth_rate=stochastic_depth
            ),
        ),
        decoder=decoders.Decoder(
            type="fpn", fpn=decoders.FPN(num_filters=fpn_filters, use_separable_conv=True)
        ),
        head=mg_retinanet.RetinaNetHead(
            num_convs=head_convs, num_filters=head_filters, use_separable_conv=True
        ),
        anchor=mg_retinanet.Anchor(num_scales=3, aspect_ratios=[0.5, 1.0, 2.0], anchor_size=3.0),
        norm_activation=common.NormActivation(
            activation="relu", use_sync_bn=False, norm_momentum=0.99, norm_epsilon=1e-3
        ),
        detection_generator=mg_retinanet.DetectionGenerator(
            pre_nms_score_threshold=pre_nms_score_threshold,
            max_num_detections=100,
            # The exported TFLite_Detection_PostProcess op: same threshold and count as above.
            tflite_post_processing=common.TFLitePostProcessingConfig(
                max_detections=100, nms_score_threshold=pre_nms_score_threshold
            ),
        ),
    )


def _cosine_adam(peak: float, total_steps: int, warmup_steps: int):
    return optimization.OptimizationConfig(
        {
            "optimizer": {
                "type": "adam",
                "adam": {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
            },
            "learning_rate": {
                "type": "cosine",
                "cosine": {"initial_learning_rate": peak, "decay_steps": total_steps, "alpha": 0.0},
            },
            "warmup": {
                "type": "linear",
                "linear": {"warmup_steps": warmup_steps, "warmup_learning_rate": 0.0},
            },
        }
    )


RESTRICTIONS = ["task.train_data.is_training != None", "task.validation_data.is_training != None"]


def coco_config(name: str = "conv_medium") -> cfg.ExperimentConfig:
    """The paper's Section 7.2 recipe with backbone `name`."""
    p = PAPER
    steps_per_epoch = COCO_TRAIN_EXAMPLES // p["batch_size"]
    eval_batch_size = 8
    return cfg.ExperimentConfig(
        runtime=cfg.RuntimeConfig(mixed_precision_dtype="bfloat16"),
        task=mg_retinanet.RetinaNetTask(
            annotation_file=os.path.join(COCO_INPUT_PATH_BASE, "instances_val2017.json"),
            model=_model(
                name,
                input_size=p["input_size"],
                num_classes=91,
                stochastic_depth=p["stochastic_depth"],
                fpn_filters=p["fpn_filters"],
                head_filters=p["head_filters"],
                head_convs=p["head_convs"],
            ),
            losses=mg_retinanet.Losses(l2_weight_decay=p["l2"]),
            train_data=mg_retinanet.DataConfig(
                input_path=os.path.join(COCO_INPUT_PATH_BASE, "train*"),
                is_training=True,
                global_batch_size=p["batch_size"],
                parser=mg_retinanet.Parser(
                    aug_rand_hflip=True,
                    aug_scale_min=0.1,
                    aug_scale_max=2.0,
                    aug_type=common.Augmentation(
                        type="randaug",
                        randaug=common.RandAugment(
                            num_layers=2, magnitude=10, exclude_ops=list(RANDAUG_EXCLUDE)
                        ),
                    ),
                ),
            ),
            validation_data=mg_retinanet.DataConfig(
                input_path=os.path.join(COCO_INPUT_PATH_BASE, "val*"),
                is_training=False,
                global_batch_size=eval_batch_size,
            ),
        ),
        trainer=cfg.TrainerConfig(
            train_steps=p["epochs"] * steps_per_epoch,
            validation_steps=COCO_VAL_EXAMPLES // eval_batch_size,
            validation_interval=steps_per_epoch,
            steps_per_loop=steps_per_epoch,
            summary_interval=steps_per_epoch,
            checkpoint_interval=steps_per_epoch,
            optimizer_config=_cosine_adam(
                ADAM_LEARNING_RATE,
                p["epochs"] * steps_per_epoch,
                p["warmup_epochs"] * steps_per_epoch,
            ),
        ),
        restrictions=list(RESTRICTIONS),
    )


def digits_config(name: str = "conv_small") -> cfg.ExperimentConfig:
    """The same detector family on the digits set, sized for minutes on 2 CPU cores.

    Differences from the COCO recipe, and why: conv_small at 128 px, 128-d FPN and head (CPU time);
    no stochastic depth and no RandAugment (a few hundred steps from scratch); scale jitter
    0.8-1.25; pre-NMS score threshold 0.001 (a short run's scores are low: at Model Garden's 0.05 a
    150-step prototype kept no detections); Adam 1e-3 with a 50-step warm-up; float32 on CPU.
    The paths are relative to the data folder the digits maker writes (override with
    --params_override task.train_data.input_path=...).
    """
    steps, batch = 600, 16
    return cfg.ExperimentConfig(
        runtime=cfg.RuntimeConfig(mixed_precision_dtype="float32"),
        task=mg_retinanet.RetinaNetTask(
            annotation_file="digits_det/val_annotations.json",
            model=_model(
                name,
                input_size=DIGITS_INPUT_SIZE,
                num_classes=DIGITS_NUM_CLASSES,
                stochastic_depth=0.0,
                fpn_filters=128,
                head_filters=128,
                head_convs=4,
                pre_nms_score_threshold=0.001,
            ),
            losses=mg_retinanet.Losses(l2_weight_decay=3e-5),
            train_data=mg_retinanet.DataConfig(
                input_path="digits_det/train-*.tfrecord",
                is_training=True,
                global_batch_size=batch,
                dtype="float32",
                shuffle_buffer_size=1000,
                parser=mg_retinanet.Parser(
                    aug_rand_hflip=False, aug_scale_min=0.8, aug_scale_max=1.25
                ),
            ),
            validation_data=mg_retinanet.DataConfig(
                input_path="digits_det/val-*.tfrecord",
                is_training=False,
                global_batch_size=16,
                dtype="float32",
                drop_remainder=False,
            ),
        ),
        trainer=cfg.TrainerConfig(
            train_steps=steps,
            validation_steps=-1,
            validation_interval=steps,
            steps_per_loop=50,
            summary_interval=50,
            checkpoint_interval=100,
            max_to_keep=3,
            optimizer_config=_cosine_adam(1e-3, steps, 50),
        ),
        restrictions=list(RESTRICTIONS),
    )


def experiment_names() -> list[str]:
    from mobilenetv4 import specs

    names = ["retinanet_mobilenetv4_coco", "retinanet_mobilenetv4_digits"]
    return names + [f"retinanet_mobilenetv4_{name}_coco" for name in sorted(specs.ARCHITECTURES)]


def register() -> None:
    """Registers every experiment with exp_factory (a second call is a no-op)."""
    from mobilenetv4 import specs

    factories = {
        "retinanet_mobilenetv4_coco": coco_config,
        "retinanet_mobilenetv4_digits": digits_config,
    }
    for name in sorted(specs.ARCHITECTURES):
        factories[f"retinanet_mobilenetv4_{name}_coco"] = lambda n=name: coco_config(n)
    registered = exp_factory._REGISTERED_CONFIGS  # pylint: disable=protected-access
    for key, fn in factories.items():
        current = registered.get(key)
        if current is not None and getattr(current, "__module__", None) != __name__:
            raise RuntimeError(f"experiment {key!r} is already registered by {current.__module__}")
        registered.pop(key, None)  # ours (or this module, reloaded): replace
        exp_factory.register_config_factory(key)(fn)


__all__ = [
    "ADAM_LEARNING_RATE",
    "DIGITS_INPUT_SIZE",
    "DIGITS_NUM_CLASSES",
    "PAPER",
    "coco_config",
    "digits_config",
    "experiment_names",
    "register",
]
