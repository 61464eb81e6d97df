"""Export a detector: SavedModel + TFLite (FP32, FP16, INT8) through Model Garden's serving code.

    python -m experiments.detection.export --experiment retinanet_mobilenetv4_digits \
        --config_file data/digits_det/experiment.yaml --checkpoint runs/det_digits \
        --output_dir runs/det_digits/export [--precisions fp32,fp16,int8]

Written to --output_dir:
  saved_model/             Model Garden's DetectionModule (`image_tensor` uint8 input of any
                           size, its resize/normalisation, NMS `v2`): the serving model
  tflite_saved_model/      the same detector for conversion (`tflite` input: a normalised
                           [1, H, W, 3] float image; NMS as the TFLite_Detection_PostProcess op)
  detector_fp32.tflite, detector_fp16.tflite, detector_int8.tflite
                           Model Garden's `convert_tflite_model` (FP16 weights; INT8 `int8`:
                           integer weights and activations calibrated on --calibration_steps
                           images of task.train_data, float input and float boxes/scores/classes;
                           --denylisted_ops keeps the named ops in float, Model Garden's option)
  detector_*.report.md / .report.json
                           the classifier export's report (tflite.analysis): ops, TRANSPOSE
                           count, XNNPACK partitions, ops left outside XNNPACK, size, params, MACs
  stand_in_checkpoint/      with --stand_in_weights N: the stand-in weights exported (a tf.train.Checkpoint)
Without --checkpoint the weights are random (graph checks only; the report says so). For latency
without trained weights pass --stand_in_weights N: random init made numerically trained-like
(`tflite.models.stand_in_statistics`: layer scale ~1, kernels preconditioned, every BatchNorm of backbone, FPN and head
re-estimated in training mode, cumulative average over N real images of task.train_data, the
pipeline INT8 calibration reads), so activations are O(1) as in a trained detector.
Existing outputs are refused unless --overwrite; every output is written under a temporary name and
renamed when complete.
"""

from __future__ import annotations

import copy
import os

from experiments.detection import flags
from mobilenetv4 import cli

PRECISIONS = {"fp32": None, "fp16": "fp16", "int8": "int8"}  # -> Model Garden's quant_type


def tflite_name(precision: str) -> str:
    return f"detector_{precision}.tflite"


def report_names(precision: str) -> tuple[str, str]:
    stem = f"detector_{precision}"
    return stem + ".report.md", stem + ".report.json"


def _checkpoint_path(checkpoint: str | None) -> str | None:
    import tensorflow as tf

    if not checkpoint:
        return None
    if os.path.isdir(checkpoint):
        path = tf.train.latest_checkpoint(checkpoint)
        if path is None:
            raise cli.UserError(
                f"--checkpoint {checkpoint} holds no TF checkpoint (no 'checkpoint' "
                "index file); pass a training --model_dir or a ckpt-N prefix"
            )
        return path
    if not os.path.exists(checkpoint + ".index"):
        raise cli.UserError(
            f"--checkpoint {checkpoint} is neither a directory nor a checkpoint prefix "
            "(no .index file)"
        )
    return checkpoint


STAND_IN_DIR = "stand_in_checkpoint"


def weights_text(checkpoint: str | None, stand_in_images: int = 0) -> str:
    """What the report says about the weights."""
    if stand_in_images:
        return (
            f"stand-in (kernels preconditioned and BN re-estimated on {stand_in_images} images, "
            "layer scale ~1)"
        )
    return checkpoint or "random (no --checkpoint)"


def _images(params, num_images: int):
    """`num_images` preprocessed [H, W, 3] float images of task.train_data, through the pipeline
    Model Garden's INT8 calibration reads (`export_tflite_lib.create_representative_dataset`)."""
    import numpy as np
    from official.vision.serving import export_tflite_lib

    params = copy.deepcopy(params)
    images = [
        image.numpy()[0]
        for image, _ in export_tflite_lib.create_representative_dataset(params).take(num_images)
    ]
    if len(images) < num_images:
        raise cli.UserError(
            f"--stand_in_weights {num_images}: task.train_data gives only {len(images)} images"
        )
    return np.stack(images)


def write_stand_in_checkpoint(params, path: str, num_images: int, batch_size: int = 8) -> str:
    """Random init + `tflite.models.stand_in_statistics` over `num_images` real images (batches of
    `batch_size`, cumulative average), written as a tf.train.Checkpoint(model=...) in the folder
    `path` (atomically); returns the checkpoint prefix for Model Garden's export."""
    import tensorflow as tf

    from experiments.detection import detector
    from mobilenetv4 import fileio
    from tflite import models

    images = _images(params, num_images)
    build = copy.deepcopy(params)
    if build.task.model.backbone.type == "mobilenetv4":  # no dropped blocks in the training pass
        build.override(
            {"task": {"model": {"backbone": {"mobilenetv4": {"stochastic_depth_rate": 0.0}}}}},
            is_strict=True,
        )
    model = detector.build_model(build)
    models.stand_in_statistics(
        model, images, batch_size=batch_size, num_batches=-(-num_images // batch_size)
    )
    with fileio.atomic_path(path) as tmp:
        os.makedirs(tmp)
        tf.train.Checkpoint(model=model).write(os.path.join(tmp, "ckpt"))
    return os.path.join(path, "ckpt")


def _saved_model(params, size, checkpoint, path, *, input_type, nms_version):
    """Model Garden's export_inference_graph into `path` (atomically)."""
    from mobilenetv4 import fileio
    from official.vision.serving import export_saved_model_lib

    params = copy.deepcopy(params)
    params.override(
        {"task": {"model": {"detection_generator": {"nms_version": nms_version}}}}, is_strict=True
    )
    with fileio.atomic_path(path) as tmp:
        export_saved_model_lib.export_inference_graph(
            input_type=input_type,
            batch_size=1,
            input_image_size=list(size),
            params=params,
            checkpoint_path=checkpoint,
            export_dir=tmp,
            export_checkpoint_subdir=None,
            export_saved_model_subdir=None,
        )
    return path


def export(
    params,
    output_dir: str,
    *,
    checkpoint: str | None = None,
    precisions=("fp32", "fp16", "int8"),
    calibration_steps: int = 100,
    denylisted_ops=None,
    stand_in_images: int = 0,
    overwrite: bool = False,
    log=print,
) -> dict:
    """Writes the SavedModels, the .tflite files and their reports; returns {precision: report}."""
    from experiments.detection import detector
    from mobilenetv4 import fileio
    from official.vision.serving import export_tflite_lib
    from tflite import analysis

    for p in precisions:
        if p not in PRECISIONS:
            raise cli.UserError(f"unknown precision {p!r}; choose from {', '.join(PRECISIONS)}")
    if stand_in_images and checkpoint:
        raise cli.UserError("pass either --checkpoint or --stand_in_weights, not both")
    fileio.check_writable_dir(output_dir)
    outputs = [os.path.join(output_dir, n) for n in ("saved_model", "tflite_saved_model")]
    for p in precisions:
        outputs += [os.path.join(output_dir, n) for n in (tflite_name(p), *report_names(p))]
    if stand_in_images:
        outputs.append(os.path.join(output_dir, STAND_IN_DIR))
    for out in outputs:
        if os.path.lexists(out) and not overwrite:
            raise cli.UserError(
                f"--output_dir {out} already exists; pass --overwrite to replace it or "
                "choose another --output_dir"
            )
    if "int8" in precisions or stand_in_images:
        from experiments.detection import data

        data.files_of(params.task.train_data.input_path, "task.train_data")  # calibration images
    ckpt = _checkpoint_path(checkpoint)
    size = detector.input_size(params)
    name = (
        params.task.model.backbone.get()
        .as_dict()
        .get("model_name", params.task.model.backbone.type)
    )
    if stand_in_images:
        ckpt = write_stand_in_checkpoint(params, outputs[-1], stand_in_images)
    weights = weights_text(None if stand_in_images else ckpt, stand_in_images)
    log(f"exporting {name} RetinaNet at {size[0]}x{size[1]}; weights: {weights}")

    _saved_model(params, size, ckpt, outputs[0], input_type="image_tensor", nms_version="v2")
    log(f"wrote {outputs[0]}")
    _saved_model(params, size, ckpt, outputs[1], input_type="tflite", nms_version="tflite")
    log(f"wrote {outputs[1]}")

    reports = {}
    for precision in precisions:
        path = os.path.join(output_dir, tflite_name(precision))
        calib = copy.deepcopy(params)
        calib.override({"task": {"train_data": {"dtype": "float32"}}}, is_strict=True)
        try:
            data_bytes = export_tflite_lib.convert_tflite_model(
                saved_model_dir=outputs[1],
                quant_type=PRECISIONS[precision],
                params=calib,
                calibration_steps=calibration_steps,
                denylisted_ops=list(denylisted_ops)
                if precision == "int8" and denylisted_ops
                else None,
            )
        except Exception as e:  # noqa: BLE001 (the converter raises many kinds; one line each)
            raise cli.UserError(
                f"TFLite conversion ({precision}) failed: {' '.join(str(e).split())[:300]}"
            ) from None
        fileio.write_bytes(path, data_bytes)
        stats = analysis.graph_stats(path)
        title = (
            f"{name} RetinaNet {precision.upper()} {size[0]}x{size[1]} -> "
            f"{os.path.basename(path)} (weights: {weights})"
        )
        md = analysis.format_report(stats, None, title)
        md_path, json_path = (os.path.join(output_dir, n) for n in report_names(precision))
        report = {
            "model": name,
            "precision": precision,
            "input_size": list(size),
            "checkpoint": ckpt,
            "weights": weights,
            "quant_type": PRECISIONS[precision],
            "calibration_steps": calibration_steps if precision == "int8" else None,
            "denylisted_ops": list(denylisted_ops or []) if precision == "int8" else None,
            "postprocess": "TFLite_Detection_PostProcess" in stats.op_histogram,
            "output": path,
            "graph": stats.to_dict(),
        }
        fileio.write_text(md_path, md)
        fileio.write_json(json_path, report)
        log(md)
        reports[precision] = report
    return reports


def main(argv=None):
    p = cli.ArgumentParser("python -m experiments.detection.export", __doc__)
    flags.add_experiment_flags(p)
    p.add_argument(
        "--checkpoint",
        default=None,
        help="a training --model_dir (newest checkpoint) or a ckpt-N prefix",
    )
    cli.add_output_flags(p, kind="dir", required=True, help="folder for the exported files")
    p.add_argument(
        "--precisions",
        type=cli.comma_list,
        default=["fp32", "fp16", "int8"],
        help="comma-separated: fp32,fp16,int8 (default all three)",
    )
    cli.add_number_flag(
        p, "--calibration_steps", 100, "INT8 calibration images from task.train_data"
    )
    p.add_argument(
        "--denylisted_ops",
        type=cli.comma_list,
        default=None,
        help="INT8: ops kept in float (Model Garden's option), e.g. BATCH_MATMUL,SOFTMAX "
        "to keep a hybrid's attention on XNNPACK as tflite.export does",
    )
    p.add_argument(
        "--stand_in_weights",
        dest="stand_in_images",
        type=cli.positive_int,
        default=0,
        metavar="N",
        help="no checkpoint: random weights with stand-in statistics (layer scale ~1, kernels "
        "preconditioned, every BN "
        "re-estimated on N task.train_data images) for latency measurements",
    )
    args = p.parse_args(argv)
    options = {k: v for k, v in vars(args).items() if k not in flags.EXPERIMENT_FLAGS}
    export(flags.load_experiment(args), **options)  # the other flags are export()'s arguments
    return 0


if __name__ == "__main__":
    cli.run(main)
