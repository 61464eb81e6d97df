"""Build records: what a weights file or a training run was built for, stored with it.

Every artifact the trainer, `mobilenetv4.convert` and `experiments.nas` write carries one, so the
next stage (`tflite.export --weights FILE` / `--checkpoint DIR`, `create_model(weights=...)`) rebuilds
the same model without flags to remember, and refuses weights built for something else.

A record is a JSON object:
  format          1
  model           registered name (e.g. "conv_small"), or null when `architecture` is given
  architecture    an architecture spec (a searched network), or null
  build           create_model keyword arguments: classes, width_multiplier, padding, bn_epsilon,
                  attention_type, include_top, ... (only the non-default ones need be present)
  input_size      [H, W] the model was trained / converted at
  preprocessing   normalisation name (mobilenetv4.preprocessing.NORMALIZATIONS)
  eval_crop_fraction  the eval transform's central crop (trainer's), or null
  weights         "ema" or "raw": which weights the file holds
  has_ema         (training runs) whether the run's checkpoints hold EMA weights
  data            (training runs) the dataset spec the model was trained on, e.g. "sklearn_digits"
  pretrained_cfg  (timm weights) the tag's preprocessing config

Where it lives: in an `.h5` weights file as the root attribute `mobilenetv4_build`; for a training
run as `MODEL_DIR/build.json` (it describes the checkpoints there).
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional

from mobilenetv4.cli import UserError

FORMAT = 1
H5_ATTRIBUTE = "mobilenetv4_build"
KERAS_ENTRY = "mobilenetv4_build.json"  # an extra member of a .keras zip (tf_keras ignores it)
RUN_FILE = "build.json"
# Fields whose disagreement between a file and the model it is loaded into is an error.
IDENTITY_FIELDS = ("model", "architecture")
BUILD_IDENTITY_KEYS = ("classes", "width_multiplier", "attention_type", "include_top")


def make(
    model: Optional[str],
    *,
    build: Optional[dict] = None,
    input_size=None,
    preprocessing: str = "imagenet",
    weights: str = "raw",
    architecture: Any = None,
    **extra,
) -> dict:
    """A new record; `extra` adds the optional fields (has_ema, data, pretrained_cfg, ...)."""
    if weights not in ("ema", "raw"):
        raise ValueError(f"weights must be 'ema' or 'raw', got {weights!r}")
    record = {
        "format": FORMAT,
        "model": model,
        "architecture": architecture,
        "build": dict(build or {}),
        "input_size": list(input_size) if input_size is not None else None,
        "preprocessing": preprocessing,
        "weights": weights,
    }
    record.update(extra)
    return record


def _validate(record, where: str) -> dict:
    if not isinstance(record, dict) or not (record.get("model") or record.get("architecture")):
        raise UserError(
            f"{where} has a malformed build record (no model name or architecture); "
            "re-create the file with this package"
        )
    record.setdefault("build", {})
    record.setdefault("format", FORMAT)
    if record["format"] > FORMAT:
        raise UserError(
            f"{where} was written by a newer mobilenetv4 (build record format "
            f"{record['format']}); upgrade the package"
        )
    return record


def _parse(raw, where: str) -> dict:
    try:
        record = json.loads(raw)
    except (TypeError, ValueError):
        raise UserError(f"{where} has an unreadable build record; re-create the file") from None
    return _validate(record, where)


def write_h5(path: str | os.PathLike, record: dict) -> None:
    """Adds `record` to an HDF5 weights file (call on the temporary file before its rename)."""
    import h5py

    with h5py.File(os.fspath(path), "a") as f:
        f.attrs[H5_ATTRIBUTE] = json.dumps(record)


def read_h5(path: str | os.PathLike) -> Optional[dict]:
    """The record of an HDF5 weights file, or None for a plain (record-less) file."""
    path = os.fspath(path)
    if not path.endswith((".h5", ".hdf5")) or not os.path.isfile(path):
        return None
    import h5py

    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get(H5_ATTRIBUTE)
    except OSError:
        return None  # not HDF5: the weights loader reports that
    if raw is None:
        return None
    if isinstance(raw, bytes):
        raw = raw.decode()
    return _parse(raw, path)


def write_keras(path: str | os.PathLike, record: dict) -> None:
    """Adds `record` to a `.keras` file as the zip member KERAS_ENTRY (call on the temporary file
    before its rename)."""
    import zipfile

    with zipfile.ZipFile(os.fspath(path), "a") as archive:
        archive.writestr(KERAS_ENTRY, json.dumps(record))


def read_keras(path: str | os.PathLike) -> Optional[dict]:
    """The record of a `.keras` file, or None for a record-less (or unreadable) one."""
    import zipfile

    path = os.fspath(path)
    try:
        with zipfile.ZipFile(path) as archive:
            if KERAS_ENTRY not in archive.namelist():
                return None
            raw = archive.read(KERAS_ENTRY).decode("utf-8", "replace")
    except (OSError, zipfile.BadZipFile):
        return None  # the weights loader reports it
    return _parse(raw, path)


def write_run(model_dir: str | os.PathLike, record: dict) -> str:
    from mobilenetv4 import fileio

    path = os.path.join(os.fspath(model_dir), RUN_FILE)
    fileio.write_json(path, record)
    return path


def read_run(model_dir: str | os.PathLike) -> Optional[dict]:
    path = os.path.join(os.fspath(model_dir), RUN_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return _parse(f.read(), path)


def read(path: str | os.PathLike) -> Optional[dict]:
    """The record of a weights file, a checkpoint directory, or a checkpoint prefix inside a run
    directory (MODEL_DIR/checkpoints/ckpt-N); None when there is none."""
    path = os.fspath(path)
    if os.path.isdir(path):
        record = read_run(path)
        if record is None and os.path.basename(os.path.normpath(path)) == "checkpoints":
            record = read_run(os.path.dirname(os.path.normpath(path)))
        return record
    if path.endswith((".h5", ".hdf5")):
        return read_h5(path)
    if path.endswith(".keras"):
        return read_keras(path)
    parent = os.path.dirname(path)
    if os.path.basename(parent) == "checkpoints":
        return read_run(os.path.dirname(parent))
    return read_run(parent) if parent else None


def describe(record: dict) -> str:
    """One line: 'conv_small, 10 classes, 32x32, imagenet preprocessing, EMA weights'."""
    name = record.get("model") or "searched architecture"
    build = record.get("build", {})
    parts = [name]
    if build.get("width_multiplier"):
        parts.append(f"width {build['width_multiplier']}")
    if build.get("classes") is not None:
        parts.append(f"{build['classes']} classes")
    if record.get("input_size"):
        parts.append("x".join(str(s) for s in record["input_size"]))
    if build.get("attention_type"):
        parts.append(f"attention {build['attention_type']}")
    if build.get("padding"):
        parts.append(f"padding {build['padding']}")
    parts.append(f"{record.get('preprocessing', 'imagenet')} preprocessing")
    parts.append(f"{'EMA' if record.get('weights') == 'ema' else 'raw'} weights")
    return ", ".join(parts)


def merge(record: Optional[dict], explicit: dict, log=print, source: str = "") -> dict:
    """`explicit` (flags the user gave, None = not given) over the record's values; says so for
    every flag that overrides a recorded value. Returns {key: value} of the merged settings."""
    merged = {}
    if record:
        merged.update(record.get("build", {}))
        for key in ("input_size", "preprocessing", "model"):
            if record.get(key) is not None:
                merged[key] = record[key]
    for key, value in explicit.items():
        if value is None:
            continue
        if key in merged and merged[key] != value and record is not None:
            log(
                f"note: {key}={value!r} from the command line overrides {merged[key]!r} "
                f"recorded in {source or 'the build record'}"
            )
        merged[key] = value
    return merged


def _recorded_default(record: dict, key: str):
    """What create_model used for `key` when the record says None (unknown: None)."""
    if key == "attention_type":
        return "mobile_mqa"
    if key == "width_multiplier":
        from mobilenetv4 import specs

        try:
            return specs.get(record.get("model")).width_multiplier
        except (KeyError, ValueError, TypeError):
            return None
    return None


def check_compatible(
    record: Optional[dict], model_name: Optional[str], build: dict, where: str
) -> None:
    """UserError when weights recorded for one model are loaded into another (variant, classes,
    width, attention type or top differ); names both sides."""
    if not record:
        return
    if model_name is not None and record.get("model") not in (None, model_name):
        raise UserError(
            f"{where} holds weights of {record['model']!r}, not {model_name!r}; "
            f"use --model {record['model']} (or create_model({record['model']!r}, ...))"
        )
    recorded = record.get("build", {})
    for key in BUILD_IDENTITY_KEYS:
        if key not in recorded or build.get(key) is None:
            continue  # not recorded, or the caller leaves it to the record
        # A recorded None is create_model's default (the architecture's width, Mobile MQA), not
        # "any value".
        have = _recorded_default(record, key) if recorded[key] is None else recorded[key]
        if have is not None and have != build[key]:
            raise UserError(
                f"{where} was built with {key}={recorded[key]!r}, but the model asks "
                f"for {key}={build[key]!r}; drop the override or use matching weights"
            )
