"""Strict loading of a timm MobileNetV4 state dict into a Keras model.

Every key must match: missing keys, unexpected keys and shape mismatches are all collected and
reported in one error, and nothing is assigned unless everything matches. The only keys that may
be left out are the ones the caller opts out of: the classifier when `new_classifier=True`
(fine-tuning to another class count) and the layers a headless model (`include_top=False`,
`features_only=True`) does not build.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import List, Mapping, Optional

import numpy as np
import tf_keras as keras

from mobilenetv4.weights.safetensors_file import CheckpointError, read_safetensors
from mobilenetv4.weights.timm_keys import timm_targets

_LIST_LIMIT = 20  # names shown per category in an error; the exception holds them all
_TOP_PREFIXES = ("conv_head.", "norm_head.", "classifier.")


class WeightMismatchError(CheckpointError):
    """The checkpoint does not fit the model; `.missing`, `.unexpected` and `.mismatched` hold
    every offending key (the message shows the first few of each)."""

    def __init__(self, message, missing, unexpected, mismatched):
        super().__init__(message)
        self.missing = missing
        self.unexpected = unexpected
        self.mismatched = mismatched


@dataclasses.dataclass
class LoadReport:
    loaded: int  # tensors assigned
    skipped: List[str]  # checkpoint keys deliberately not loaded (new head / headless model)
    num_classes: Optional[int]  # classes of the checkpoint's classifier


def checkpoint_classes(state_dict: Mapping[str, np.ndarray]) -> Optional[int]:
    """Class count of a timm checkpoint's classifier, or None if it has none."""
    w = state_dict.get("classifier.weight")
    return int(w.shape[0]) if w is not None else None


def _names(title, items):
    shown = "\n    ".join(items[:_LIST_LIMIT])
    more = f"\n    ... and {len(items) - _LIST_LIMIT} more" if len(items) > _LIST_LIMIT else ""
    return f"  {title} ({len(items)}):\n    {shown}{more}"


def describe_checkpoint(state_dict: Mapping[str, np.ndarray]) -> str:
    """A one-line summary of a timm MobileNetV4 state dict and the models it could be, for errors."""
    from mobilenetv4 import specs  # pylint: disable=g-import-not-at-top

    blocks = {}
    for key in state_dict:
        parts = key.split(".")
        if parts[0] == "blocks" and len(parts) > 2:
            blocks.setdefault(int(parts[1]), set()).add(int(parts[2]))
    if not blocks:
        return "it has no MobileNetV4 blocks"
    per_stage = [len(blocks[s]) for s in sorted(blocks)][:-1]  # the last timm stage is head_conv
    head = state_dict.get(f"blocks.{max(blocks)}.0.conv.weight")
    head_channels = int(head.shape[0]) if head is not None else None
    attention = any(".attn." in k for k in state_dict)
    fits = [
        a.name
        for a in specs.ARCHITECTURES.values()
        if [len(st) for st in a.stages] == per_stage
        and any(isinstance(b, specs.MobileMQA) for st in a.stages for b in st) == attention
    ]
    width = f", i.e. width {head_channels / 960:g}" if head_channels else ""
    guess = f"; same layout as: {', '.join(fits)}" if fits else "; no known model has this layout"
    return (
        f"the checkpoint has {per_stage} blocks per stage, a {head_channels}-channel head "
        f"conv{width}{', attention blocks' if attention else ''}{guess} (anti-aliased and plain "
        "variants have identical tensors)"
    )


def _headless_keys(model, keys):
    """Checkpoint keys of layers the model does not build because the user asked for no top."""
    names = {l.name for l in model.layers}
    skip = []
    if "head" not in names:
        skip += [k for k in keys if k.startswith(_TOP_PREFIXES)]
    if "head_conv" not in names:
        last = max((int(k.split(".")[1]) for k in keys if k.startswith("blocks.")), default=None)
        skip += [k for k in keys if last is not None and k.startswith(f"blocks.{last}.")]
    return skip


def load_timm_state_dict(
    model: keras.Model,
    state_dict: Mapping[str, np.ndarray],
    *,
    new_classifier: bool = False,
    source: str = "checkpoint",
) -> LoadReport:
    """Sets every weight, BN statistic and layer scale of `model` from a timm state dict.

    Args:
      model: a model built by `mobilenetv4.create_model` with padding="symmetric" and
        bn_epsilon=1e-5 (timm's conventions; otherwise outputs differ although loading succeeds).
      state_dict: timm key -> array (torch layouts), e.g. from `read_safetensors`.
      new_classifier: leave the model's classifier as initialised and ignore the checkpoint's
        (for a different class count).
      source: name of the checkpoint, for messages.
    Raises:
      WeightMismatchError listing every missing, unexpected and mis-shaped key.
    """
    targets = timm_targets(model)
    keys = [k for k in state_dict if not k.endswith(".num_batches_tracked")]
    skipped = _headless_keys(model, keys)
    if new_classifier:
        skipped += [k for k in keys if k.startswith("classifier.")]
        targets = {k: t for k, t in targets.items() if not k.startswith("classifier.")}
    skipped_set = set(skipped)
    missing = sorted(k for k in targets if k not in state_dict)
    unexpected = sorted(k for k in keys if k not in targets and k not in skipped_set)
    mismatched = []
    for key, target in targets.items():
        if key in state_dict and tuple(state_dict[key].shape) != target.torch_shape:
            mismatched.append(
                f"{key}: checkpoint {tuple(state_dict[key].shape)}, model expects "
                f"{target.torch_shape} ({target.layer})"
            )
    mismatched.sort()
    if missing or unexpected or mismatched:
        only_classifier = (
            not missing and not unexpected and all(m.startswith("classifier.") for m in mismatched)
        )
        if only_classifier:
            hint = (
                "Only the classifier differs: to fine-tune with another class count, pass "
                "new_classifier=True (create_model does so when `classes` differs from the "
                "checkpoint's)."
            )
        else:
            hint = f"Is this a checkpoint of another model or width? {describe_checkpoint(state_dict)}."
        first = (
            mismatched
            or [f"{k}: missing from the checkpoint" for k in missing]
            or [f"{k}: unexpected in the checkpoint" for k in unexpected]
        )[0]
        # The first line stands alone (a CLI shows only it); the lists follow.
        parts = [
            f"{source} does not fit model {model.name!r}: {len(missing)} missing, "
            f"{len(unexpected)} unexpected, {len(mismatched)} mis-shaped tensors (first: "
            f"{first}). {hint}"
        ]
        if missing:
            parts.append(_names("missing from the checkpoint", missing))
        if unexpected:
            parts.append(_names("unexpected in the checkpoint", unexpected))
        if mismatched:
            parts.append(_names("shape mismatches", mismatched))
        raise WeightMismatchError("\n".join(parts), missing, unexpected, mismatched)

    keras.backend.batch_set_value(
        [
            (
                t.variable,
                t.to_keras(np.asarray(state_dict[k])).astype(t.variable.dtype.as_numpy_dtype),
            )
            for k, t in targets.items()
        ]
    )
    if skipped:
        logging.info(
            "%s: not loaded (by request): %d tensors under %s",
            source,
            len(skipped),
            sorted({k.rsplit(".", 1)[0] for k in skipped})[:8],
        )
    return LoadReport(
        loaded=len(targets), skipped=sorted(skipped), num_classes=checkpoint_classes(state_dict)
    )


def load_timm_weights(model: keras.Model, path, *, new_classifier: bool = False) -> LoadReport:
    """`load_timm_state_dict` from a timm `.safetensors` file."""
    path = os.fspath(path)
    return load_timm_state_dict(
        model, read_safetensors(path), new_classifier=new_classifier, source=path
    )
