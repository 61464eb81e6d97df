"""Bad data and bad flags: one-line errors, exit 2, nothing written or lost."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from mobilenetv4.cli import UserError


def _copy(tiny_digits, tmp_path):
    out = str(tmp_path / "data")
    shutil.copytree(tiny_digits, out)
    yaml = os.path.join(out, "experiment.yaml")
    text = open(yaml).read().replace(tiny_digits, out)
    open(yaml, "w").write(text)
    return out, yaml


def test_corrupt_tfrecord_is_named(tiny_digits, tmp_path):
    from experiments.detection import data, detector

    out, yaml = _copy(tiny_digits, tmp_path)
    path = os.path.join(out, "train-00001-of-00002.tfrecord")
    blob = open(path, "rb").read()
    open(path, "wb").write(blob[: len(blob) // 2])  # truncated mid-record
    params = detector.load_config("retinanet_mobilenetv4_digits", [yaml])
    with pytest.raises(UserError, match="train-00001-of-00002.tfrecord is corrupt or truncated"):
        data.check(params)


def test_class_ids_outside_the_annotation_file(tiny_digits, tmp_path):
    from experiments.detection import data, detector

    out, yaml = _copy(tiny_digits, tmp_path)
    ann = os.path.join(out, "val_annotations.json")
    coco = json.load(open(ann))
    coco["categories"] = [c for c in coco["categories"] if c["id"] <= 5]  # digits 0-4 only
    json.dump(coco, open(ann, "w"))
    params = detector.load_config("retinanet_mobilenetv4_digits", [yaml])
    with pytest.raises(UserError, match="is not a category of task.annotation_file"):
        data.check(params)
    small = detector.load_config("retinanet_mobilenetv4_digits", [yaml], lock=False)
    small.task.model.num_classes = 5
    small.task.annotation_file = None
    with pytest.raises(UserError, match="outside 1..4"):
        data.check(small)


def test_train_cli_refuses_before_touching_model_dir(tiny_digits, tmp_path):
    model_dir = str(tmp_path / "run")
    cmd = [
        sys.executable,
        "-m",
        "experiments.detection.train",
        "--experiment=retinanet_mobilenetv4_digits",
        f"--config_file={os.path.join(tiny_digits, 'experiment.yaml')}",
        "--mode=train",
        f"--model_dir={model_dir}",
        "--params_override=task.model.backbone.mobilenetv4.model_name=conv_tiny",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=os.getcwd())
    err_lines = [l for l in out.stderr.splitlines() if l.startswith("error: ")]
    assert out.returncode == 2, out.stderr[-2000:]
    assert len(err_lines) == 1 and "unknown MobileNetV4 backbone 'conv_tiny'" in err_lines[0]
    assert "Traceback" not in out.stderr
    assert not os.path.exists(model_dir)
