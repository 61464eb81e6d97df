"""`create_model(name, weights="....safetensors")`: a Keras model carrying a timm checkpoint.

Builds the model with timm's numerics (symmetric padding, BN epsilon 1e-5), sizes the classifier
to the checkpoint unless told otherwise, loads strictly, and attaches the pretrained tag's
preprocessing as `model.preprocess` (and its config as `model.pretrained_cfg`).
"""

from __future__ import annotations

import logging
import os
import re
from typing import Callable, Optional

from mobilenetv4.weights.loader import checkpoint_classes, load_timm_state_dict
from mobilenetv4.weights.preprocessing import make_preprocess
from mobilenetv4.weights.pretrained import PretrainedCfg, list_pretrained, resolve_pretrained_cfg
from mobilenetv4.weights.safetensors_file import CheckpointError, read_safetensors

# timm's hub repositories (and hence download paths) are named "mobilenetv4_<model>.<tag>".
_HUB_NAME = re.compile(r"mobilenetv4_([a-z0-9_]+)(?:\.([a-z0-9_]+))?")


def name_in_path(path: str):
    """(model, tag) named by a hub-style path such as
    ".../models--timm--mobilenetv4_conv_medium.e500_r256_in1k/.../model.safetensors", else None."""
    known = {n.split(".")[0] for n in list_pretrained()}
    for match in reversed(list(_HUB_NAME.finditer(os.fspath(path)))):
        model, tag = match.group(1), match.group(2)
        if model in known:
            return model, (tag if tag and f"{model}.{tag}" in list_pretrained(model) else None)
    return None


def attach_pretrained_cfg(model, cfg: PretrainedCfg):
    """Gives `model` its tag's config (`model.pretrained_cfg`) and preprocessing function
    (`model.preprocess`).

    Args:
      model: the model.
      cfg: the checkpoint's tag config.
    """
    model.pretrained_cfg = cfg
    model.preprocess = make_preprocess(cfg)
    return model


def create_from_timm(
    name: str,
    path,
    build: Callable[..., object],
    *,
    pretrained_tag: Optional[str] = None,
    **overrides,
):
    """Builds `name` with `build(**overrides)` and loads the timm safetensors file at `path`.

    `classes` defaults to the checkpoint's class count; a different `classes` (fine-tuning)
    leaves a freshly initialised classifier and loads everything else.

    Args:
      name: the registered model name.
      path: the timm `.safetensors` file (a PyTorch pickle is refused unread).
      build: builds the model from create_model keyword arguments.
      pretrained_tag: the checkpoint's tag when the path does not name it.
      **overrides: create_model keyword arguments (padding and bn_epsilon default to timm's).

    Returns:
      The model, with `model.pretrained_cfg` and `model.preprocess` attached.

    Raises:
      CheckpointError (a mobilenetv4.cli.UserError): the file is not a fitting checkpoint.
    """
    path = os.fspath(path)
    state = read_safetensors(path)
    named = name_in_path(path)
    if named and named[0] != name:
        raise CheckpointError(
            f"{path} is named as a {named[0]!r} checkpoint but model {name!r} was requested; "
            f"use create_model({named[0]!r}, ...) (or rename the file if it really is {name!r})."
        )
    tag = pretrained_tag or (named[1] if named else None)
    file_classes = checkpoint_classes(state)
    overrides.setdefault("padding", "symmetric")
    overrides.setdefault("bn_epsilon", 1e-5)
    if overrides["padding"] != "symmetric" or overrides["bn_epsilon"] != 1e-5:
        logging.warning(
            "%s: timm weights expect padding='symmetric', bn_epsilon=1e-5; with "
            "padding=%r, bn_epsilon=%g outputs will differ from timm's",
            name,
            overrides["padding"],
            overrides["bn_epsilon"],
        )
    has_top = overrides.get("include_top", True) and not overrides.get("features_only", False)
    if has_top and file_classes is not None:
        overrides.setdefault("classes", file_classes)
    new_classifier = has_top and file_classes is not None and overrides["classes"] != file_classes
    if new_classifier:
        # A warning, not info: a tool passing its default classes=1000 to a 12k checkpoint should
        # not silently drop the trained classifier.
        logging.warning(
            "%s: new randomly initialised %d-class classifier (the checkpoint's has %d "
            "classes); everything else is loaded",
            name,
            overrides["classes"],
            file_classes,
        )
    model = build(**overrides)
    load_timm_state_dict(model, state, new_classifier=new_classifier, source=path)
    return attach_pretrained_cfg(model, resolve_pretrained_cfg(name, tag, file_classes))
