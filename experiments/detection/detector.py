"""Shared pieces of the detection commands: experiment configs with clear errors, building Model
Garden's RetinaNet from them, and the detector's parts (backbone / FPN / head)."""

from __future__ import annotations

import os
import types

import experiments.detection
from mobilenetv4.cli import UserError

experiments.detection.register()  # the backbone and the experiments, for every command using this

PARTS = ("backbone", "fpn", "head")


class _Flags(types.SimpleNamespace):
    """What Model Garden's ExperimentParser reads from absl FLAGS."""

    def __contains__(self, name):
        return hasattr(self, name)


def _first_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text.strip("'\"")[:400]


def load_config(experiment: str, config_files=(), params_override: str = "", *, lock=True):
    """Model Garden's ExperimentParser (strict overrides), with one-line UserErrors for an unknown
    experiment, a missing config file, a field that does not exist or a value that fails validation.
    """
    from official.core import exp_factory, train_utils

    registered = exp_factory._REGISTERED_CONFIGS  # pylint: disable=protected-access
    if experiment not in registered:
        ours = sorted(k for k in registered if "mobilenetv4" in k)
        raise UserError(
            f"unknown experiment {experiment!r}; this package registers {', '.join(ours)}"
        )
    for path in config_files or ():
        if not os.path.isfile(path):
            raise UserError(f"--config_file {path} does not exist")
    flags_obj = _Flags(
        experiment=experiment,
        config_file=list(config_files or ()),
        params_override=params_override or "",
        tpu="",
        tf_data_service="",
    )
    try:
        params = train_utils.ExperimentParser(flags_obj).parse()
    except KeyError as e:
        raise UserError(
            f"unknown config field in --config_file/--params_override: {_first_line(e)} "
            "(fields are checked strictly; see the experiment's params.yaml)"
        ) from None
    except (ValueError, TypeError, AttributeError) as e:
        raise UserError(f"bad --config_file/--params_override: {_first_line(e)}") from None
    # Backbone settings are checked here, before any work, with the names the user wrote.
    model = params.task.model
    if model.backbone.type == "mobilenetv4":
        from experiments.detection import backbone as backbone_lib

        backbone_lib.resolve_build(
            model.backbone.mobilenetv4,
            model.norm_activation.norm_momentum,
            model.norm_activation.norm_epsilon,
        )
    try:
        params.validate()
    except (KeyError, ValueError) as e:
        raise UserError(f"invalid experiment config: {_first_line(e)}") from None
    if lock:
        params.lock()
    return params


def input_size(params) -> tuple[int, int]:
    size = list(params.task.model.input_size)
    if len(size) < 2 or not all(size[:2]):
        raise UserError("task.model.input_size must be [H, W, 3]")
    return int(size[0]), int(size[1])


def build_model(params, size: tuple[int, int] | None = None, batch_size=None):
    """Model Garden's RetinaNet for `params.task.model` (random init unless the backbone config
    names weights)."""
    import tf_keras
    from official.vision.modeling import factory

    h, w = size or input_size(params)
    spec = tf_keras.layers.InputSpec(shape=[batch_size, h, w, 3])
    try:
        return factory.build_retinanet(spec, params.task.model)
    except LookupError as e:
        raise UserError(f"cannot build the detector: {_first_line(e)}") from None


def part_of(layer_name: str, model) -> str:
    """backbone / fpn / head / other for a top-level layer of a RetinaNet model."""
    if model.backbone is not None and layer_name == model.backbone.name:
        return "backbone"
    if model.decoder is not None and layer_name == model.decoder.name:
        return "fpn"
    if layer_name == model.head.name:
        return "head"
    return "other"


def _model_garden_attention(model):
    """Model Garden's MobileNetV4 attention layers inside `model`: their projections are einsums
    over raw variables (MultiQueryAttentionLayerV2) and their matmuls are einsums, which
    `mobilenetv4.costs` does not see; counted here so Model Garden's own backbone is measured whole."""
    try:
        from official.vision.modeling.layers import nn_blocks
    except ImportError:
        return []
    kinds = (
        nn_blocks.OptimizedMultiQueryAttentionLayerWithDownSampling,
        nn_blocks.MultiQueryAttentionLayerV2,
    )
    return [m for m in model.submodules if isinstance(m, kinds)]


def _mg_attention_macs(layer, x_shape) -> int:
    """MACs of one call of a Model Garden MQA layer on an input of shape [1, H, W, C] that the
    Conv2D/DepthwiseConv2D count misses: the QK^T and AV matmuls, plus (V2) the einsum projections."""
    from official.vision.modeling.layers import nn_blocks

    _, h, w, c = (int(d) for d in x_shape)
    heads, key_dim, value_dim = layer._num_heads, layer._key_dim, layer._value_dim  # pylint: disable=protected-access
    if isinstance(layer, nn_blocks.MultiQueryAttentionLayerV2):
        n = m = h * w
        projections = (
            n * heads * key_dim * c
            + m * c * key_dim
            + m * c * value_dim
            + n * heads * value_dim * c
        )
    else:
        n = (h // layer._query_h_strides) * (w // layer._query_w_strides)  # pylint: disable=protected-access
        kv = layer._kv_strides  # pylint: disable=protected-access
        m = -(-h // kv) * -(-w // kv)
        projections = 0  # its projections are Conv2D layers, counted already
    return projections + n * heads * key_dim * m + n * heads * m * value_dim


def part_costs(model, size: tuple[int, int]) -> dict:
    """{part: {"params": all weights (BN moving statistics included, the paper's Table 7
    convention), "trainable": trainable weights, "macs": multiply-accumulates}} plus "total"."""
    import numpy as np

    from mobilenetv4 import costs

    result = {part: {"params": 0, "trainable": 0, "macs": 0} for part in PARTS + ("total",)}
    mg_attention, originals = [], {}
    for layer in _model_garden_attention(model):
        originals[layer] = layer.call

        def wrapped(inputs, *args, _layer=layer, _call=layer.call, **kwargs):
            x = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
            mg_attention.append(_mg_attention_macs(_layer, x.shape))
            return _call(inputs, *args, **kwargs)

        layer.call = wrapped
    try:
        for cost in costs.layer_costs(model, (size[0], size[1], 3)):
            result[part_of(cost.block, model)]["macs"] += cost.macs
    finally:
        for layer in originals:
            layer.__dict__.pop("call", None)
    result["backbone"]["macs"] += sum(mg_attention)
    for layer in model.layers:
        part = part_of(layer.name, model)
        if part not in result:
            continue
        result[part]["params"] += int(sum(np.prod(v.shape) for v in layer.weights))
        result[part]["trainable"] += int(sum(np.prod(v.shape) for v in layer.trainable_weights))
    for key in ("params", "trainable", "macs"):
        result["total"][key] = sum(result[p][key] for p in PARTS)
    return result
