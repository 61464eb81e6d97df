"""A few steps of the whole path: digits set -> Model Garden training (train_and_eval) -> resume ->
export (SavedModel + INT8 TFLite with TFLite_Detection_PostProcess) -> COCO evaluation of the
.tflite with Model Garden's evaluator."""

import glob
import os
import re
import subprocess
import sys

import numpy as np
import pytest

OVERRIDE = (
    "trainer.train_steps={steps},trainer.steps_per_loop=1,trainer.checkpoint_interval=1,"
    "trainer.validation_interval={steps},trainer.validation_steps=1,"
    "trainer.summary_interval=1,task.train_data.global_batch_size=2,"
    "task.validation_data.global_batch_size=2,task.model.head.num_filters=32,"
    "task.model.decoder.fpn.num_filters=32,task.model.head.num_convs=1"
)


def _train(digits_config, model_dir, steps, mode="train_and_eval"):
    cmd = [
        sys.executable,
        "-m",
        "experiments.detection.train",
        "--experiment=retinanet_mobilenetv4_digits",
        f"--config_file={digits_config}",
        f"--mode={mode}",
        f"--model_dir={model_dir}",
        f"--params_override={OVERRIDE.format(steps=steps)}",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stderr


@pytest.mark.slow  # 3-3.5 min on 2 cores: two short Model Garden runs, an export, an eval
def test_train_resume_export_evaluate(tmp_path, digits_config):
    model_dir = str(tmp_path / "run")
    log = _train(digits_config, model_dir, steps=1)
    losses = [float(x) for x in re.findall(r"'total_loss': np\.float32\(([^)]+)\)", log)]
    assert losses and all(np.isfinite(losses))
    for key in ("AP", "AP50", "ARmax100"):
        assert re.search(rf"'{key}': np\.float32\(", log), key
    assert os.path.exists(os.path.join(model_dir, "ckpt-1.index"))
    # Resume: the same command with more steps continues from ckpt-1 (no step 1 again).
    log = _train(digits_config, model_dir, steps=2, mode="train")
    assert re.search(r"restored from checkpoint: \S*ckpt-1", log), log[-2000:]
    assert os.path.exists(os.path.join(model_dir, "ckpt-2.index"))
    assert not glob.glob(os.path.join(model_dir, ".tmp-*"))

    from experiments.detection import detector, evaluate, export

    params = detector.load_config(
        "retinanet_mobilenetv4_digits", [digits_config], OVERRIDE.format(steps=2), lock=False
    )
    out_dir = str(tmp_path / "export")
    reports = export.export(
        params,
        out_dir,
        checkpoint=model_dir,
        precisions=["int8"],
        calibration_steps=2,
        log=lambda *_: None,
    )
    graph = reports["int8"]["graph"]
    assert reports["int8"]["postprocess"] and graph["precision"] == "INT8"
    assert graph["output"]["dtype"] == "float32"  # float boxes
    assert os.path.isdir(os.path.join(out_dir, "saved_model"))
    assert os.path.exists(os.path.join(out_dir, "detector_int8.report.md"))
    tflite = os.path.join(out_dir, "detector_int8.tflite")
    params = detector.load_config(
        "retinanet_mobilenetv4_digits", [digits_config], OVERRIDE.format(steps=2), lock=False
    )
    metrics = evaluate.evaluate(params, [tflite], max_images=2, log=lambda *_: None)[tflite]
    assert {"AP", "AP50", "ARmax100"} <= set(metrics) and metrics["images"] == 2
    assert all(np.isfinite(metrics[k]) for k in ("AP", "AP50", "ARmax100"))
