"""COCO metrics of exported .tflite detectors, with Model Garden's own input pipeline and evaluator.

    python -m experiments.detection.evaluate --experiment retinanet_mobilenetv4_digits \
        --config_file data/digits_det/experiment.yaml \
        runs/det_digits/export/detector_fp32.tflite runs/det_digits/export/detector_int8.tflite \
        [--output metrics.json]

Images come from task.validation_data through Model Garden's RetinaNet parser (resize, pad,
normalise: exactly what the float model is evaluated on); each .tflite from
`experiments.detection.export` (input: the normalised image; output: TFLite_Detection_PostProcess
boxes in input pixels, classes, scores) runs on them, and its detections go to the task's
COCOEvaluator with task.annotation_file, as in `experiments.detection.train --mode eval`.
Prints AP, AP50, AP75, ARmax100 per model; --output writes all metrics as JSON.
"""

from __future__ import annotations

import numpy as np

from experiments.detection import flags
from mobilenetv4 import cli

HEADLINE = ("AP", "AP50", "AP75", "ARmax100")


def _runner(path: str):
    from tflite import ToolError, runtime

    try:
        interp = runtime.load_interpreter(path)
    except ToolError as e:
        raise cli.UserError(str(e)) from None
    runner = interp.get_signature_runner()
    return interp, runner


def _detections(runner, image: np.ndarray) -> dict:
    out = runner(**{list(runner.get_input_details())[0]: image[None].astype(np.float32)})
    missing = {"detection_boxes", "detection_scores", "detection_classes", "num_detections"} - set(
        out
    )
    if missing:
        raise cli.UserError(
            f"the .tflite has no outputs {sorted(missing)}; export it with "
            "python -m experiments.detection.export"
        )
    return {
        "detection_boxes": out["detection_boxes"].reshape(1, -1, 4),
        "detection_scores": out["detection_scores"].reshape(1, -1),
        "detection_classes": out["detection_classes"].reshape(1, -1).astype(np.int64),
        "num_detections": out["num_detections"].reshape(1).astype(np.int64),
    }


def evaluate(params, paths, *, max_images: int | None = None, log=print) -> dict:
    """{path: {metric: value}} for each .tflite, on the same validation images."""
    import tensorflow as tf
    from official.vision import tasks  # noqa: F401  (registers the RetinaNet task)
    from official.core import task_factory

    for path in paths:
        _runner(path)  # refuse unreadable models before the data work
    params.task.validation_data.global_batch_size = 1
    params.task.validation_data.dtype = "float32"
    params.task.validation_data.drop_remainder = False
    task = task_factory.get_task(params.task)
    dataset = task.build_inputs(params.task.validation_data)
    runners = {path: _runner(path)[1] for path in paths}
    evaluators = {path: _fresh_evaluator(task) for path in paths}
    count = 0
    for features, labels in dataset:
        if max_images is not None and count >= max_images:
            break
        image = features.numpy()[0]
        groundtruths = labels["groundtruths"]  # tensors, as Model Garden's evaluator expects
        for path, runner in runners.items():
            predictions = {k: tf.constant(v) for k, v in _detections(runner, image).items()}
            predictions["source_id"] = groundtruths["source_id"]
            predictions["image_info"] = labels["image_info"]
            evaluators[path].update_state(groundtruths, predictions)
        count += 1
    if count == 0:
        raise cli.UserError("task.validation_data produced no images")
    results = {}
    for path, evaluator in evaluators.items():
        metrics = {k: float(v) for k, v in evaluator.result().items()}
        metrics["images"] = count
        results[path] = metrics
        log(
            f"{path}: "
            + ", ".join(f"{k} {metrics[k]:.4f}" for k in HEADLINE if k in metrics)
            + f" ({count} images)"
        )
    return results


def _fresh_evaluator(task):
    from official.vision.evaluation import coco_evaluator

    cfg = task.task_config
    return coco_evaluator.COCOEvaluator(
        annotation_file=cfg.annotation_file,
        include_mask=False,
        per_category_metrics=cfg.per_category_metrics,
        max_num_eval_detections=cfg.max_num_eval_detections,
    )


def main(argv=None):
    p = cli.ArgumentParser("python -m experiments.detection.evaluate", __doc__)
    p.add_argument("models", nargs="+", help=".tflite files from experiments.detection.export")
    flags.add_experiment_flags(p)
    p.add_argument(
        "--max_images",
        type=cli.positive_int,
        default=None,
        help="evaluate on the first N validation images only",
    )
    cli.add_output_flags(p, help="write the metrics as JSON")
    args = p.parse_args(argv)
    from experiments.detection import data
    from mobilenetv4 import fileio

    fileio.check_outputs([args.output], inputs=args.models, overwrite=args.overwrite)
    params = flags.load_experiment(args)
    if not params.task.annotation_file:
        raise cli.UserError(
            "task.annotation_file is empty; the COCO evaluator needs the annotation "
            "JSON (the digits maker writes val_annotations.json)"
        )
    data.check(params, train=False, evaluate=True)
    results = evaluate(params, args.models, max_images=args.max_images)
    if args.output:
        fileio.write_json(args.output, results)
    return 0


if __name__ == "__main__":
    cli.run(main)
