"""COCO-style detection with MobileNetV4 backbones on Model Garden (tf-models-official).

Importing this package registers, once and idempotently:
  - the backbone `mobilenetv4` with `official.vision.modeling.backbones.factory`
    (experiments.detection.backbone), and
  - the experiments `retinanet_mobilenetv4_coco`, `retinanet_mobilenetv4_<name>_coco` and
    `retinanet_mobilenetv4_digits` with `official.core.exp_factory` (experiments.detection.configs).
`import mobilenetv4` never imports Model Garden; only this package does. Its commands register when
they need Model Garden (importing `experiments.detection.detector` registers), so their `--help`
is instant.

Commands (docs/detection.md):
  python -m experiments.detection.digits    make the digits detection set (TFRecords + COCO JSON)
  python -m experiments.detection.train     Model Garden's train driver with these registrations
  python -m experiments.detection.export    SavedModel + TFLite (FP32/FP16/INT8) + report
  python -m experiments.detection.evaluate  COCO metrics of a .tflite detector (Model Garden's)
  python -m experiments.detection.summary   params and MACs per part (backbone / FPN / head)
"""

import sys


def register() -> None:
    """Registers the backbone and the experiments with Model Garden (a second call is a no-op)."""
    from experiments.detection import backbone, configs  # pylint: disable=g-import-not-at-top

    backbone.register()
    configs.register()


# While `python -m experiments.detection.<command>` is being located, sys.argv[0] is "-m" (Python's
# -m): the command registers when it needs Model Garden (importing `detector` does), so its --help
# and flag errors need not import TensorFlow.
if sys.argv[:1] != ["-m"]:
    register()
