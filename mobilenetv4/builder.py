"""Builds a functional tf_keras model from an `Architecture` (specs.py).

The arguments are checked here, at the boundary, before anything is built: a bad value is a
`mobilenetv4.cli.UserError` (a ValueError) naming the argument and what is allowed, never a NaN
model or a traceback from deep inside TensorFlow.
"""

import dataclasses
import math
import numbers

import tf_keras as keras

from mobilenetv4 import layers as L
from mobilenetv4 import specs
from mobilenetv4.cli import UserError
from mobilenetv4.layers.common import PADDINGS, make_divisible

TOTAL_STRIDE = 32
ENDPOINTS = ("stride_4", "stride_8", "stride_16", "stride_32")
# The most float32 activation memory one image may need before building is refused. Generous:
# conv_large at 1024x1024 needs about 0.7 GiB by this estimate, hybrid_large at 2048x2048 about
# 13 GiB; conv_small at 100000x100000 would need about 1,400 GiB.
MAX_ACTIVATION_BYTES = 64 * 2**30


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_fraction(name, value):
    """`value` in [0, 1)."""
    if not _is_number(value) or not 0.0 <= value < 1.0:
        raise UserError(f"{name} must be in [0, 1), got {value!r}")


def _check_positive(name, value):
    """`value` finite and > 0."""
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        raise UserError(f"{name} must be > 0 and finite, got {value!r}")


def _check_input_shape(input_shape, default_size):
    if input_shape is None:
        return (default_size, default_size, 3)
    try:
        input_shape = tuple(input_shape)
    except TypeError:
        raise UserError(
            f"input_shape must be (height, width, channels), got {input_shape!r}"
        ) from None
    if len(input_shape) != 3:
        raise UserError(f"input_shape must be (height, width, channels), got {input_shape}")
    height, width, channels = input_shape
    for axis, size in (("height", height), ("width", width)):
        if size is not None and not _is_int(size):
            raise UserError(f"input {axis} must be an integer or None, got {size!r}")
        if size is not None and size < TOTAL_STRIDE:
            raise UserError(
                f"input {axis} {size} is smaller than the network's total stride {TOTAL_STRIDE}; "
                f"use an input of at least {TOTAL_STRIDE}x{TOTAL_STRIDE} (or None for any size)"
            )
    if not _is_int(channels) or channels < 1:
        raise UserError(f"input channels must be a positive number, got {channels!r}")
    return tuple(int(s) if s is not None else None for s in input_shape)


def _check_options(options):
    """Raises UserError for the first bad value in `options` (build_model's arguments by name)."""
    for name in ("width_multiplier", "bn_epsilon"):
        _check_positive(name, options[name])
    for name in ("bn_momentum", "dropout", "stochastic_depth_rate"):
        _check_fraction(name, options[name])
    pooling, padding = options["pooling"], options["padding"]
    classes, attention_type = options["classes"], options["attention_type"]
    if pooling not in (None, "avg", "max"):
        raise UserError(f"pooling must be None, 'avg' or 'max', got {pooling!r}")
    if padding not in PADDINGS:
        raise UserError(f"padding must be one of {PADDINGS}, got {padding!r}")
    if not _is_int(classes) or classes < 1:
        raise UserError(f"classes must be a positive integer, got {classes!r}")
    if attention_type not in L.ATTENTION_TYPES:
        raise UserError(
            f"attention_type must be one of {L.ATTENTION_TYPES}, got {attention_type!r}"
        )


def estimate_activation_bytes(arch, height, width):
    """Float32 bytes of the activations one image produces in a forward pass (every conv output,
    expanded tensors and attention maps included): what must fit in memory to run the model.

    Args:
      arch: an `Architecture` (its `width_multiplier` applied).
      height: input height in pixels.
      width: input width in pixels.

    Returns:
      The estimate in bytes (an int; exact sizes up to padding rounding).
    """
    scale = arch.width_multiplier

    def channels(filters):
        return make_divisible(filters * scale) if scale != 1.0 else filters

    h, w = math.ceil(height / 2), math.ceil(width / 2)
    in_channels = arch.stem.filters
    elements = height * width * 3 + h * w * in_channels
    for stage in arch.stages:
        for block in stage:
            if block.stride > 1:
                h, w = math.ceil(h / block.stride), math.ceil(w / block.stride)
            if isinstance(block, specs.MobileMQA):
                tokens = h * w
                keys = math.ceil(h / block.kv_stride) * math.ceil(w / block.kv_stride)
                elements += tokens * block.heads * (2 * block.key_dim + keys) + tokens * in_channels
                continue
            out_channels = channels(block.filters)
            expand = getattr(block, "expand", 0)
            elements += h * w * (make_divisible(in_channels * expand) * 2 if expand else 0)
            elements += h * w * out_channels
            in_channels = out_channels
    elements += h * w * channels(arch.head_conv.filters)
    return 4 * elements


def _check_memory(arch, input_shape):
    height, width, _ = input_shape
    if height is None or width is None:
        return
    needed = estimate_activation_bytes(arch, height, width)
    if needed > MAX_ACTIVATION_BYTES:
        raise UserError(
            f"input {height}x{width} needs an estimated {needed / 2**30:,.0f} GiB of activations per "
            f"image, over the limit of {MAX_ACTIVATION_BYTES / 2**30:.0f} GiB; use a smaller "
            "input_shape"
        )


def _block_layer(block, name, *, width, act, drop, arch, attention_type, common):
    """The layer of one block row of the architecture table."""
    # The residual branch of UIB and attention blocks: layer scale (hybrids) and drop path.
    branch = {"layer_scale_init_value": arch.layer_scale, "stochastic_depth_rate": drop}
    if isinstance(block, specs.MobileMQA):
        # Anti-aliasing never applies to the attention K/V downsampling (timm).
        return L.MobileAttentionBlock(
            num_heads=block.heads,
            key_dim=block.key_dim,
            value_dim=block.key_dim,
            kv_strides=block.kv_stride,
            attention_type=attention_type,
            name=name,
            **branch,
            **common,
        )
    if not isinstance(block, (specs.Conv2D, specs.FusedIB, specs.UIB)):
        raise TypeError(f"{arch.name} {name}: unknown block spec {block!r}")
    conv = dict(
        filters=width(block.filters),
        strides=block.stride,
        activation=act,
        name=name,
        anti_alias=arch.anti_alias,
        **common,
    )
    if isinstance(block, specs.Conv2D):
        return L.ConvBN(kernel_size=block.kernel, **conv)
    if isinstance(block, specs.FusedIB):  # no layer scale: hybrids scale only UIB and attention
        return L.FusedIB(
            expand_ratio=block.expand, kernel_size=block.kernel, stochastic_depth_rate=drop, **conv
        )
    return L.UniversalInvertedBottleneck(
        expand_ratio=block.expand,
        start_dw_kernel_size=block.start_dw,
        middle_dw_kernel_size=block.middle_dw,
        **branch,
        **conv,
    )


def build_model(
    arch,
    *,
    include_top=True,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation=None,
    dropout=None,
    width_multiplier=None,
    stochastic_depth_rate=0.0,
    bn_momentum=0.99,
    bn_epsilon=1e-5,
    padding="same",
    features_only=False,
    kernel_regularizer=None,
    attention_type="mobile_mqa",
    name=None,
):
    """Builds a MobileNetV4 from its architecture table.

    Args:
      arch: an `Architecture` (mobilenetv4.specs).
      include_top: add the pooled head and the classifier.
      input_shape: (H, W, C); None for the architecture's default resolution; H or W may be None.
      pooling: without the top, None (feature map), "avg" or "max".
      classes: classifier outputs, an integer >= 1.
      classifier_activation: None for logits, or e.g. "softmax".
      dropout: dropout before the classifier, in [0, 1); None for the architecture's.
      width_multiplier: scales every block width and the head conv (finite, > 0); None for the
        architecture's.
      stochastic_depth_rate: drop-path rate of the last block, in [0, 1); it grows linearly with
        depth from 0.
      bn_momentum: BatchNorm momentum, in [0, 1).
      bn_epsilon: BatchNorm epsilon, finite and > 0.
      padding: "same" (TF) or "symmetric" (PyTorch/timm, for imported weights).
      features_only: return the four stage outputs as a dict {"stride_4", ..., "stride_32"}.
      kernel_regularizer: regularizer of every conv and dense kernel.
      attention_type: "mobile_mqa", "mqa" or "mhsa" (hybrids only).
      name: the model name; default "mobilenetv4_<arch name>".

    Returns:
      A functional tf_keras.Model.

    Raises:
      mobilenetv4.cli.UserError (a ValueError) for a bad argument or an input too large to run.
    """
    width_multiplier = arch.width_multiplier if width_multiplier is None else width_multiplier
    dropout = arch.dropout if dropout is None else dropout
    _check_options(locals())
    arch = dataclasses.replace(arch, width_multiplier=width_multiplier).validate()
    input_shape = _check_input_shape(input_shape, arch.default_size)
    _check_memory(arch, input_shape)

    def width(filters):
        return make_divisible(filters * width_multiplier) if width_multiplier != 1.0 else filters

    common = dict(
        padding=padding,
        bn_momentum=bn_momentum,
        bn_epsilon=bn_epsilon,
        kernel_regularizer=kernel_regularizer,
    )
    act = arch.activation

    inputs = keras.Input(shape=input_shape, name="image")
    # The stem is never width-scaled (timm `fix_stem`), so reduced-width models keep 3x3x32; nor is
    # it anti-aliased (timm's aa variants change only the strided block convs).
    x = L.ConvBN(
        filters=arch.stem.filters,
        kernel_size=arch.stem.kernel,
        strides=arch.stem.stride,
        activation=act,
        name="stem",
        **common,
    )(inputs)
    endpoints = {}
    block_index = 0
    for s, stage in enumerate(arch.stages, start=1):
        for b, block in enumerate(stage):
            # Stochastic depth grows linearly with depth, over every block kind (attention included).
            drop = stochastic_depth_rate * block_index / arch.num_blocks
            x = _block_layer(
                block,
                f"stage{s}_block{b}",
                width=width,
                act=act,
                drop=drop,
                arch=arch,
                attention_type=attention_type,
                common=common,
            )(x)
            block_index += 1
        endpoints[ENDPOINTS[s - 1]] = x

    model_name = name or f"mobilenetv4_{arch.name}"
    if features_only:
        return keras.Model(inputs, endpoints, name=model_name)

    x = L.ConvBN(
        filters=width(arch.head_conv.filters),
        kernel_size=1,
        activation=act,
        name="head_conv",
        **common,
    )(x)
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(keepdims=True, name="global_pool")(x)
        x = L.ConvBN(
            filters=arch.num_features, kernel_size=1, activation=act, name="head", **common
        )(x)
        x = keras.layers.Flatten(name="flatten")(x)
        if dropout > 0:
            x = keras.layers.Dropout(rate=dropout, name="dropout")(x)
        x = keras.layers.Dense(
            units=classes,
            activation=classifier_activation,
            kernel_regularizer=kernel_regularizer,
            name="classifier",
        )(x)
    elif pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="global_pool")(x)
    return keras.Model(inputs, x, name=model_name)
