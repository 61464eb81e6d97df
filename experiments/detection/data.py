"""Checks of a detection dataset before any job touches its model_dir: the TFRecords of
`task.train_data` / `task.validation_data` are readable Model Garden detection examples, and their
class ids are categories of `task.annotation_file` and below `task.model.num_classes`."""

from __future__ import annotations

import glob
import json
import os

from mobilenetv4.cli import UserError


def files_of(input_path, what: str) -> list[str]:
    patterns = (
        [p for p in str(input_path).split(",") if p.strip()]
        if isinstance(input_path, str)
        else list(input_path)
    )
    if not patterns:
        raise UserError(
            f"{what}.input_path is empty; make the data with python -m "
            "experiments.detection.digits and pass its experiment.yaml as --config_file"
        )
    files = []
    for pattern in patterns:
        found = sorted(glob.glob(pattern.strip()))
        if not found:
            raise UserError(f"{what}.input_path {pattern} matches no file")
        files += found
    return files


def annotation_categories(path: str) -> set[int]:
    if not os.path.isfile(path):
        raise UserError(f"task.annotation_file {path} does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return {int(c["id"]) for c in data["categories"]}
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(
            f"task.annotation_file {path} is not a COCO annotation JSON with "
            f"categories ({type(e).__name__}: {e})"
        ) from None


def scan_tfrecords(
    files: list[str], *, num_classes: int, categories: set[int] | None, what: str
) -> dict:
    """Reads every record once; UserError on a corrupt file or a bad class id. Returns counts."""
    import tensorflow as tf

    examples = objects = 0
    for path in files:
        try:
            for record in tf.data.TFRecordDataset(path):
                try:
                    ex = tf.train.Example.FromString(record.numpy())
                except Exception:  # noqa: BLE001 (protobuf's DecodeError)
                    raise UserError(
                        f"{what} file {path}: record {examples} is not a tf.train.Example"
                    ) from None
                feature = ex.features.feature
                if "image/encoded" not in feature:
                    raise UserError(
                        f"{what} file {path}: record {examples} has no image/encoded; it is not "
                        "a Model Garden detection example"
                    )
                labels = (
                    list(feature["image/object/class/label"].int64_list.value)
                    if "image/object/class/label" in feature
                    else []
                )
                for label in labels:
                    if not 0 < label < num_classes:
                        raise UserError(
                            f"{what} file {path}: class id {label} is outside 1..{num_classes - 1} "
                            "(task.model.num_classes - 1)"
                        )
                    if categories is not None and label not in categories:
                        raise UserError(
                            f"{what} file {path}: class id {label} is not a category of "
                            f"task.annotation_file (its ids: {sorted(categories)})"
                        )
                examples += 1
                objects += len(labels)
        except tf.errors.DataLossError as e:
            raise UserError(
                f"{what} file {path} is corrupt or truncated after {examples} records "
                f"({' '.join(str(e).split())[:120]}); re-create it"
            ) from None
    if examples == 0:
        raise UserError(f"{what} files {files[0]}... hold no records")
    return {"files": len(files), "examples": examples, "objects": objects}


def check(params, *, train: bool = True, evaluate: bool = True) -> dict:
    """Checks the data `params` will read; returns {"train": counts, "validation": counts}."""
    task = params.task
    categories = annotation_categories(task.annotation_file) if task.annotation_file else None
    result = {}
    num_classes = int(task.model.num_classes)
    for split, field, wanted in (
        ("train", "train_data", train),
        ("validation", "validation_data", evaluate),
    ):
        if wanted:
            what = f"task.{field}"
            result[split] = scan_tfrecords(
                files_of(getattr(task, field).input_path, what),
                num_classes=num_classes,
                categories=categories,
                what=what,
            )
    return result
