"""tf_keras weights files (`.h5`, `.weights.h5`, `.keras`, TF checkpoint prefixes): reading them
safely and checking them against the model they are loaded into.

Only weights are ever read from a file: `model.load_weights`, never `keras.models.load_model`, so
a file holding a whole model (even one with a `Lambda` layer, whose stored Python would run on
deserialisation) never runs code here; its layers' weights are read, its architecture is ignored.

An `.h5` file may carry a build record (`mobilenetv4.build_record`, HDF5 attribute
`mobilenetv4_build`): the model, build arguments, input size, preprocessing and timm tag it was
written for. `create_model(name, weights=FILE)` then rebuilds that model with no flags to
remember, and refuses the file when the requested model differs (another variant, class count,
width or attention type) even where every tensor shape would fit.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from typing import List, Optional, Tuple

from mobilenetv4 import build_record
from mobilenetv4.cli import UserError
from mobilenetv4.weights.pretrained import PretrainedCfg

KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")
# Keras' own shape-mismatch message, reduced to its facts for a one-line error.
_ASSIGN = re.compile(
    r"variable '\s*([^']+?)(?::0)?'.*variable shape (\([^)]*\)).*assigned value "
    r"shape (\([^)]*\))",
    re.S,
)


def is_keras_weights(path) -> bool:
    """True for a tf_keras weights file or TF checkpoint prefix (anything else is read as timm)."""
    path = os.fspath(path)
    return path.endswith(KERAS_SUFFIXES) or os.path.exists(path + ".index")


def save_weights(model, path, record: dict) -> None:
    """`model.save_weights(path)` (HDF5) with `record` embedded; call it on a temporary path
    (`fileio.atomic_path`) so the finished file appears only when complete.

    Args:
      model: the model whose weights to save.
      path: an `.h5` path (`.weights.h5` gives tf_keras' v3 layout, other `.h5` the legacy one).
      record: a build record (`build_record.make`).
    """
    model.save_weights(path)
    build_record.write_h5(path, record)


def read_record(path) -> Optional[dict]:
    """The build record of a weights file (`.h5` attribute or `.keras` member), or None for a
    record-less file (or a TF checkpoint prefix)."""
    path = os.fspath(path)
    if path.endswith(".keras"):
        return build_record.read_keras(path)
    return build_record.read_h5(path)


def pretrained_cfg_from_record(record: dict) -> Optional[PretrainedCfg]:
    """The timm tag config a record carries (converted timm weights), or None."""
    cfg = record.get("pretrained_cfg")
    if not cfg:
        return None
    fields = set(PretrainedCfg.__dataclass_fields__)
    return PretrainedCfg(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items() if k in fields}
    )


def apply_record(name: str, path, overrides: dict, allowed) -> Tuple[dict, Optional[dict]]:
    """(build arguments, record): `overrides` completed from the file's record.

    Explicit overrides win where they agree with the record; a record written for another model,
    class count, width, attention type or top is an error naming both sides.

    Args:
      name: the registered model name requested.
      path: the weights file.
      overrides: the create_model keyword arguments the caller gave.
      allowed: the names build_model accepts (other recorded fields are ignored).
    """
    where = os.fspath(path)
    record = read_record(where)
    if record is None:
        return dict(overrides), None
    if not record.get("model"):
        raise UserError(
            f"{where} holds weights of a searched architecture, not of {name!r}; build "
            "that architecture from its record instead"
        )
    build_record.check_compatible(record, name, overrides, where)
    build = {k: v for k, v in record.get("build", {}).items() if k in allowed}
    # An explicit value wins; None (a caller passing its default through) keeps the recorded one.
    build.update({k: v for k, v in overrides.items() if v is not None or k not in build})
    if (
        "input_shape" not in overrides
        and record.get("input_size")
        and not build.get("features_only")
    ):
        build["input_shape"] = (*record["input_size"], 3)
    return build, record


def load_weights(model, path) -> None:
    """`model.load_weights(path)` with one-line errors naming the file and the first mismatch.

    Args:
      model: the built model.
      path: `.h5`, `.weights.h5`, `.keras` or a TF checkpoint prefix.

    Raises:
      UserError: the file is missing, unreadable, or its weights do not fit `model`.
    """
    path = os.fspath(path)
    if not (os.path.exists(path) or os.path.exists(path + ".index")):
        raise UserError(f"weights file {path} does not exist")
    if os.path.isdir(path):
        raise UserError(
            f"weights {path} is a directory; pass a weights file (.h5, .weights.h5, "
            ".keras), a TF checkpoint prefix or a timm .safetensors file"
        )
    code = code_layers(path)
    if code:
        raise UserError(
            f"{path} is a whole model whose architecture holds Python code (Lambda layer "
            f"{', '.join(code[:3])}); it is not read. Pass weights saved with "
            "model.save_weights instead"
        )
    try:
        model.load_weights(path)
    except (ValueError, OSError, KeyError) as error:
        raise UserError(_mismatch_message(model, path, error)) from None


def _stored_architecture(path) -> Optional[str]:
    """The JSON architecture a whole-model `.h5` / `.keras` stores (read as text, never
    deserialised), or None for a weights-only file."""
    try:
        if path.endswith((".h5", ".hdf5")):
            import h5py  # pylint: disable=g-import-not-at-top

            with h5py.File(path, "r") as f:
                raw = f.attrs.get("model_config")
        elif path.endswith(".keras") and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                raw = archive.read("config.json") if "config.json" in archive.namelist() else None
        else:
            return None
    except (OSError, KeyError, zipfile.BadZipFile):
        return None  # unreadable: load_weights reports it
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


def code_layers(path) -> List[str]:
    """Names of the layers of a whole-model file whose stored config carries Python code (Keras
    `Lambda`), found by reading the architecture as JSON; [] for weights-only files.

    Args:
      path: a `.h5` or `.keras` file.
    """
    raw = _stored_architecture(os.fspath(path))
    if not raw:
        return []
    try:
        config = json.loads(raw)
    except ValueError:
        return []
    found = []

    def walk(node):
        if isinstance(node, dict):
            if node.get("class_name") == "Lambda":
                found.append(str((node.get("config") or {}).get("name", "?")))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    return found


_HINT = "were the weights saved from another model, width or class count?"
_MISSING = re.compile(r"Expected: \['([^']+?)(?::0)?'")


def _decoded(values):
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _first_legacy_mismatch(model, path) -> Optional[str]:
    """In a legacy-layout `.h5` (saved layer by layer in order), the first layer with weights whose
    name or weight shapes differ from the model's, described for an error; None if none."""
    import h5py  # pylint: disable=g-import-not-at-top

    try:
        with h5py.File(path, "r") as f:
            group = (
                f["model_weights"] if "layer_names" not in f.attrs and "model_weights" in f else f
            )
            saved = []
            for layer in _decoded(group.attrs.get("layer_names", [])):
                names = _decoded(group[layer].attrs.get("weight_names", []))
                if names:
                    saved.append((layer, [tuple(group[layer][w].shape) for w in names]))
    except (OSError, KeyError):
        return None
    ours = [(l.name, [tuple(w.shape) for w in l.weights]) for l in model.layers if l.weights]
    for index in range(max(len(saved), len(ours))):
        mine = saved[index] if index < len(saved) else ("nothing", [])
        theirs = ours[index] if index < len(ours) else ("nothing", [])
        if mine != theirs:
            return (
                f"layer #{index}: {mine[0]!r} with {len(mine[1])} weights {mine[1][:2]} in the "
                f"file, {theirs[0]!r} with {len(theirs[1])} weights {theirs[1][:2]} in the model"
            )
    return None


def _mismatch_message(model, path, error) -> str:
    text = " ".join(str(error).split())
    match = _ASSIGN.search(str(error))
    if match:
        weight, wanted, found = match.groups()
        return (
            f"{path} does not fit {model.name}: first mismatching layer {weight.split('/')[0]!r} "
            f"(weight {weight}: {found} in the file, {wanted} in the model); {_HINT}"
        )
    match = _MISSING.search(text)
    if match:
        weight = match.group(1)
        return (
            f"{path} does not fit {model.name}: first mismatching layer {weight.split('/')[0]!r} "
            f"(the file has no weight {weight}); {_HINT}"
        )
    first = _first_legacy_mismatch(model, path) if path.endswith((".h5", ".hdf5")) else None
    if first:
        return f"{path} does not fit {model.name}: first mismatching {first}; {_HINT}"
    if isinstance(error, OSError) or "signature" in text.lower() or "unable to" in text.lower():
        return f"{path} is not a readable weights file ({text[:160]})"
    return f"{path} does not fit {model.name}: {text[:240]}; {_HINT}"
