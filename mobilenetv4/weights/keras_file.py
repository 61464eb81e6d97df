"""Converted weights as self-describing tf_keras `.h5` files.

A weights file alone does not say how to rebuild the model it fits, and timm weights are only
right with padding="symmetric" and bn_epsilon=1e-5. We store the build arguments and the
pretrained tag in an HDF5 attribute beside the weights, so that
`create_model(name, weights="x.weights.h5")` (and hence `python -m tflite.export --weights`)
rebuilds the same model with no flags to remember.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Optional

import h5py

from mobilenetv4.weights.pretrained import PretrainedCfg

ATTRIBUTE = "mobilenetv4_build"


def save_weights_with_build(model, path: str, name: str, build_kwargs: dict,
                            cfg: Optional[PretrainedCfg]) -> None:
  """`model.save_weights(path)` (HDF5) plus the model name, build arguments and tag config."""
  model.save_weights(path)
  record = {"model": name, "build": build_kwargs,
            "pretrained_cfg": dataclasses.asdict(cfg) if cfg else None}
  with h5py.File(path, "a") as f:
    f.attrs[ATTRIBUTE] = json.dumps(record)


def read_build(path) -> Optional[dict]:
  """The record saved by `save_weights_with_build`, or None for a plain weights file."""
  path = os.fspath(path)
  if not path.endswith((".h5", ".hdf5")) or not os.path.isfile(path):
    return None
  try:
    with h5py.File(path, "r") as f:
      raw = f.attrs.get(ATTRIBUTE)
  except OSError:
    return None  # not HDF5; the Keras loader reports that
  return json.loads(raw) if raw is not None else None


def pretrained_cfg_from_record(record: dict) -> Optional[PretrainedCfg]:
  cfg = record.get("pretrained_cfg")
  if not cfg:
    return None
  return PretrainedCfg(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()})


def apply_saved_build(name: str, path, overrides: dict):
  """(overrides completed from the file's record, its PretrainedCfg or None). Explicit overrides
  win; a file saved for another model is an error."""
  record = read_build(path)
  if record is None:
    return overrides, None
  if record["model"] != name:
    raise ValueError(f"{os.fspath(path)} holds weights of {record['model']!r}, not {name!r}; "
                     f"use create_model({record['model']!r}, weights=...)")
  return {**record["build"], **overrides}, pretrained_cfg_from_record(record)
