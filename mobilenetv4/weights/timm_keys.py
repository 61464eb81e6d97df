"""Which timm state-dict key fills which Keras variable, and how its layout changes.

Walks a model built by `mobilenetv4.builder` layer by layer (names from docs/CONTRACT.md) and
yields timm's key for every variable. timm's `blocks.S` are our stage S+1; its last "stage" is our
`head_conv`; `conv_head`/`norm_head` are our post-pooling `head`.
"""

import dataclasses
from typing import Dict, Iterator, Tuple

import numpy as np
import tf_keras as keras

from mobilenetv4 import layers as L

# timm BN tensor -> Keras BatchNormalization attribute.
_BN = (
    ("weight", "gamma"),
    ("bias", "beta"),
    ("running_mean", "moving_mean"),
    ("running_var", "moving_variance"),
)
# Layout changes, torch -> Keras.
_TO_KERAS = {
    "conv": lambda a: a.transpose(2, 3, 1, 0),  # [O, I, kh, kw] -> [kh, kw, I, O]
    "dwconv": lambda a: a.transpose(2, 3, 0, 1),  # [C, 1, kh, kw] -> [kh, kw, C, 1]
    "dense": lambda a: a.T,  # [out, in] -> [in, out]
    "vector": lambda a: a,
}
_TO_TORCH_SHAPE = {
    "conv": lambda s: (s[3], s[2], s[0], s[1]),
    "dwconv": lambda s: (s[2], s[3], s[0], s[1]),
    "dense": lambda s: (s[1], s[0]),
    "vector": tuple,
}
# Sub-layer attribute of our attention layer -> timm's name inside `attn`.
_ATTN = (
    ("query", "query.proj"),
    ("key", "key.proj"),
    ("value", "value.proj"),
    ("output_proj", "output.proj"),
)
_ATTN_DOWN = (("key_down", "key"), ("value_down", "value"))


@dataclasses.dataclass(frozen=True)
class Target:
    """A Keras variable to fill and the layout of its timm tensor."""

    variable: object
    layout: str  # conv | dwconv | dense | vector
    layer: str  # our layer path, for messages

    def to_keras(self, array: np.ndarray) -> np.ndarray:
        return _TO_KERAS[self.layout](array)

    @property
    def torch_shape(self) -> Tuple[int, ...]:
        return tuple(int(d) for d in _TO_TORCH_SHAPE[self.layout](tuple(self.variable.shape)))


def _conv(conv, key, path) -> Iterator[Tuple[str, Target]]:
    if isinstance(conv, keras.layers.DepthwiseConv2D):
        yield f"{key}.weight", Target(conv.depthwise_kernel, "dwconv", path)
    else:
        yield f"{key}.weight", Target(conv.kernel, "conv", path)
    if conv.use_bias:
        yield f"{key}.bias", Target(conv.bias, "vector", path)


def _bn(bn, key, path):
    for torch_name, keras_name in _BN:
        yield f"{key}.{torch_name}", Target(getattr(bn, keras_name), "vector", path)


def _conv_bn(layer, conv_key, bn_key, path):
    yield from _conv(layer.conv, conv_key, f"{path}/conv")
    if layer.bn is not None:
        yield from _bn(layer.bn, bn_key, f"{path}/bn")


def _layer_scale(block, key, path):
    if block.layer_scale is not None:
        yield (
            f"{key}.layer_scale.gamma",
            Target(block.layer_scale.gamma, "vector", f"{path}/layer_scale"),
        )


def _block(layer, key, path):
    """timm keys of one stage block (ConvBN, FusedIB, UIB or attention block)."""
    if isinstance(layer, L.ConvBN):  # conv_small's plain conv-bn-act rows (timm ConvBnAct)
        yield from _conv_bn(layer, f"{key}.conv", f"{key}.bn1", path)
    elif isinstance(layer, L.FusedIB):  # timm EdgeResidual
        yield from _conv_bn(layer.expand, f"{key}.conv_exp", f"{key}.bn1", f"{path}/expand")
        yield from _conv_bn(layer.project, f"{key}.conv_pwl", f"{key}.bn2", f"{path}/project")
        yield from _layer_scale(layer, key, path)
    elif isinstance(layer, L.UniversalInvertedBottleneck):
        for name in ("dw_start", "pw_exp", "dw_mid", "pw_proj"):
            sub = getattr(layer, name)
            if sub is not None:
                yield from _conv_bn(sub, f"{key}.{name}.conv", f"{key}.{name}.bn", f"{path}/{name}")
        yield from _layer_scale(layer, key, path)
    elif isinstance(layer, L.MobileAttentionBlock):
        yield from _bn(layer.norm, f"{key}.norm", f"{path}/norm")
        attn = layer.attn
        for ours, theirs in _ATTN_DOWN:
            sub = getattr(attn, ours)
            if sub is not None:
                yield from _conv_bn(
                    sub,
                    f"{key}.attn.{theirs}.down_conv",
                    f"{key}.attn.{theirs}.norm",
                    f"{path}/attn/{ours}",
                )
        for ours, theirs in _ATTN:
            yield from _conv(getattr(attn, ours), f"{key}.attn.{theirs}", f"{path}/attn/{ours}")
        yield from _layer_scale(layer, key, path)
    else:
        raise TypeError(f"layer {path} ({type(layer).__name__}) has no timm counterpart")


def timm_targets(model) -> Dict[str, Target]:
    """timm state-dict key -> Target, for every variable of `model` that timm has.

    Raises TypeError if the model holds weights in a layer this mapping does not know (a model
    that `mobilenetv4.create_model` did not build), so nothing is silently left unset."""
    stage_layers = [l for l in model.layers if l.name.startswith("stage")]
    num_stages = len({l.name.split("_")[0] for l in stage_layers})
    targets: Dict[str, Target] = {}
    for layer in model.layers:
        name = layer.name
        if not layer.weights:
            continue
        if name == "stem":
            items = _conv_bn(layer, "conv_stem", "bn1", name)
        elif name.startswith("stage") and "_block" in name:
            stage, block = name[len("stage") :].split("_block")
            items = _block(layer, f"blocks.{int(stage) - 1}.{int(block)}", name)
        elif name == "head_conv":
            items = _conv_bn(
                layer, f"blocks.{num_stages}.0.conv", f"blocks.{num_stages}.0.bn1", name
            )
        elif name == "head":
            items = _conv_bn(layer, "conv_head", "norm_head", name)
        elif name == "classifier":
            items = [("classifier.weight", Target(layer.kernel, "dense", name))]
            if layer.use_bias:
                items.append(("classifier.bias", Target(layer.bias, "vector", name)))
        else:
            raise TypeError(
                f"layer {name!r} ({type(layer).__name__}) has weights but no timm "
                "counterpart; only models built by mobilenetv4.create_model can load timm "
                "checkpoints"
            )
        targets.update(items)
    covered = {id(t.variable) for t in targets.values()}
    unmapped = [v.name for v in model.weights if id(v) not in covered]
    if unmapped:
        raise TypeError(f"variables with no timm counterpart: {', '.join(unmapped)}")
    return targets
