"""COCO-style detection with MobileNetV4 backbones on Model Garden (tf-models-official).

Importing this package registers, once and idempotently:
  - the backbone `mobilenetv4` with `official.vision.modeling.backbones.factory`
    (experiments.detection.backbone), and
  - the experiments `retinanet_mobilenetv4_coco`, `retinanet_mobilenetv4_<name>_coco` and
    `retinanet_mobilenetv4_digits` with `official.core.exp_factory` (experiments.detection.configs).
`import mobilenetv4` never imports Model Garden; only this package does.

Commands (docs/detection.md):
  python -m experiments.detection.digits    make the digits detection set (TFRecords + COCO JSON)
  python -m experiments.detection.train     Model Garden's train driver with these registrations
  python -m experiments.detection.export    SavedModel + TFLite (FP32/FP16/INT8) + report
  python -m experiments.detection.evaluate  COCO metrics of a .tflite detector (Model Garden's)
  python -m experiments.detection.summary   params and MACs per part (backbone / FPN / head)
"""

from experiments.detection import backbone as _backbone
from experiments.detection import configs as _configs

_backbone.register()
_configs.register()
