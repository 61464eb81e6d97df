"""Export a MobileNetV4 classifier to TFLite (INT8 full-integer, FP16 or FP32) and report on it.

    python -m tflite.export --checkpoint /tmp/mnv4_quickstart --int8 --calibration sklearn_digits \
        --output /tmp/mnv4_quickstart/conv_small_int8.tflite
    python -m tflite.export --weights conv_small.weights.h5 --int8 --calibration /data/val_images \
        --output conv_small_int8.tflite
    python -m tflite.export --model hybrid_medium --fp16 --output hm_fp16.tflite
    python -m tflite.export --model conv_small@256 --int8 --calibration random --output cs.tflite  # latency only

Weights that carry a build record (the trainer's run directory and final*.weights.h5,
`mobilenetv4.convert`'s .h5) say which model they are: name, classes, width, input size, attention
type, padding, preprocessing and eval crop come from the record, and a flag given explicitly
overrides the recorded value (one `note:` line each). `--checkpoint DIR` restores the EMA weights
when the run kept them (what the trainer evaluated), `--raw_weights` the raw ones.

The exported graph takes pixels in [0, 255], static batch 1. The normalisation is folded into the
first convolution (kernel / std, the mean into its bias, the image padded with the mean pixel: exact;
`tflite.fold`), so no op runs over the pixels before it. That is the default (--stem_border mean)
for float input. For INT8 with int8/uint8 io the default is --stem_border zero_point: the graph's
input means pixel - 114 (scale 1, zero point -14; uint8: 114), so the first convolution's own SAME
padding pads with its zero point, pixel 114, within 0.18 std of the mean pixel. That graph is op
for op Model Garden's plain INT8 graph. --stem_border zero pads with black pixels (the same graph,
not exact on the border); --no_fold keeps the normalisation as SUB/MUL ops in front.
INT8: weights and activations int8, calibrated on --num_calibration images of --calibration;
--io sets the input/output type. With the default int8 input you feed pixel - 128 as int8 (the
uint8 pixel bytes with the top bit flipped, `pixels ^ 0x80` viewed as int8), whatever the border:
scale 1, zero point -14 (zero_point border) or -128 (mean, zero). The int8 logits dequantize with
the output's scale and zero point. --io uint8 takes uint8 pixels as
they are, at the cost of a uint8 -> int8 QUANTIZE over the image (and int8 -> uint8 at the output)
that XNNPACK does not run. A model exported without --weights/--checkpoint gets stand-in weights
(`tflite.models.stand_in_statistics`: random init, layer scale ~1, kernels preconditioned on the
input covariance and BN statistics re-estimated on the calibration images), so its latency and quantization figures are those of a trained-like network;
the report's `weights` says which weights were used.
After export a report (op histogram, TRANSPOSE count, XNNPACK partitions, size, fidelity against the
float Keras model on held-out images, and the held-out top-1 of both when the data has labels) is
printed and saved as OUTPUT.report.md / .report.json. Every file is written atomically; an
existing output is refused unless --overwrite.
"""

import os
import time

import numpy as np

from mobilenetv4 import build_record, cli, fileio, model_names
from mobilenetv4 import preprocessing as preprocessing_lib
from tflite import ToolError, analysis, calibration, requantize, runtime

PREPROCESSING_CHOICES = tuple(sorted(preprocessing_lib.NORMALIZATIONS))  # imagenet, inception, none
IO_TYPES = ("uint8", "int8", "float")
# Ops kept in float inside an INT8 model (attention precision "float"): XNNPACK runs SOFTMAX and
# GELU (hybrid_large's activation) in float only and takes an int8 BATCH_MATMUL only when the right
# operand's zero point is 0, so quantized attention falls back to the builtin kernels and splits the
# graph into one XNNPACK partition per attention block (per GELU for hybrid_large: 51). With these
# in float (DEQUANTIZE -> float op -> QUANTIZE) XNNPACK runs the whole graph.
FLOAT_ATTENTION_OPS = ("BATCH_MATMUL", "SOFTMAX", "GELU")
# attention_precision: "float" (the default, above), "int8_matmul" (the matmuls int8 with K and V
# re-quantized to zero point 0 so XNNPACK still takes them, softmax and GELU float: one partition,
# integer matmuls for CPUs whose int8 GEMM is much faster than fp32), "int8" (every op: the
# standard full-integer recipe, for EdgeTPU and the like).
ATTENTION_PRECISIONS = ("float", "int8_matmul", "int8")
# create_model arguments a build record may carry that change the exported network (the rest,
# such as kernel_regularizer or input_shape, do not apply to an inference graph).
RECORD_BUILD_KEYS = (
    "width_multiplier",
    "padding",
    "bn_epsilon",
    "bn_momentum",
    "attention_type",
    "include_top",
    "pooling",
    "dropout",
    "stochastic_depth_rate",
    "classifier_activation",
)
# The build-record settings a flag of the same name overrides: (argparse type or choices, help).
RECORD_FLAGS = {
    "preprocessing": (
        {"choices": PREPROCESSING_CHOICES},
        "normalisation folded into the graph (default: the build record's, else imagenet)",
    ),
    "eval_crop_fraction": (
        {"type": cli.positive_float},
        (
            "central crop of the calibration/held-out images (default: the build record's, else "
            f"{preprocessing_lib.EVAL_CROP_FRACTION})"
        ),
    ),
    "classes": (
        {"type": cli.positive_int},
        "classifier outputs (default: the build record's, else 1000)",
    ),
    "width_multiplier": ({"type": cli.positive_float}, "override the recorded width multiplier"),
    "attention_type": (
        {"choices": ("mobile_mqa", "mqa", "mhsa")},
        "override the recorded attention type (hybrids)",
    ),
    "padding": ({"choices": ("same", "symmetric")}, "override the recorded padding"),
}
# export() arguments given by the flag of the same name.
SAME_NAME_FLAGS = (
    "io",
    "weights",
    "checkpoint",
    "raw_weights",
    "num_calibration",
    "num_heldout",
    "tfds_data_dir",
    "overwrite",
    "edgetpu",
)
# Calibration images for the stand-in statistics of an FP16/FP32 export without weights (an INT8
# export re-estimates them on its own calibration images).
STAND_IN_IMAGES = 64
LABELLED_HELDOUT = 500  # default held-out images of a labelled source (top-1 resolution 0.2 points)
UNLABELLED_HELDOUT = 64
# What the folded stem (`tflite.fold.FoldedStem`) pads the pixels with: "mean" the mean pixel, which
# is exactly what zero padding of the normalised image is (two CONCATENATIONs of constant strips and
# a VALID convolution); "zero" black pixels (the SAME convolution itself: the graph is op for op a
# plain model's on normalised input, but the stem's border outputs differ from the float model's);
# "zero_point" (INT8 with int8/uint8 io only) the pixel c = `pixel_offset(preprocessing)` (114 for
# ImageNet's mean/std, 128 for Inception's, where it is exact): the converted graph takes pixel - c
# (input scale 1, zero point c - 128 for int8, c for uint8), so a quantized CONV_2D's SAME padding
# with the input's zero point pads with pixel c; the stored input bytes are unchanged (int8
# pixel - 128, i.e. `pixels ^ 0x80`; uint8 the pixels) and the graph is op for op the "zero" one.
STEM_BORDERS = ("mean", "zero", "zero_point")
STEM_BORDER_TEXT = {
    "mean": "mean pixel (exact, two CONCATENATIONs)",
    "zero": "black pixels (SAME convolution; not exact on the border)",
    "zero_point": "the input's zero point, pixel {offset} (SAME convolution; "
    "border error |mean - {offset}| / std per channel)",
}
# The default: INT8 with int8/uint8 io pads with the input's zero point (pixel 114 for ImageNet
# normalisation): the graph is op for op Model Garden's plain INT8 graph (no CONCATENATION), and on
# the trained quickstart model (32 px, where the stem output's padded bottom row and right column
# are 31 of its 16x16 positions) it matched the exact border: 100% top-1 agreement with the float
# model and 31.4-31.7 dB INT8 logits SQNR at 100/300/1000 calibration images (mean: 100%,
# 31.4-31.8 dB; the graph before folding 99.7-100%, 30.9-31.1 dB; the border alone, in float,
# 40 dB). Float io and FP16/FP32 keep the exact mean border: a float input has no zero point and
# a float SAME convolution pads with a black pixel, which cost 15-16 dB and 2.2-2.8 points of
# top-1 agreement on that model (docs/tflite.md).
DEFAULT_STEM_BORDER = "mean"
DEFAULT_INT8_STEM_BORDER = "zero_point"
DEFAULT_STEM_BORDER_TEXT = {
    "INT8 with int8/uint8 io": DEFAULT_INT8_STEM_BORDER,
    "otherwise": DEFAULT_STEM_BORDER,
}


def default_stem_border(precision: str, io: str) -> str:
    """The --stem_border used when none is given: zero_point where the input has a zero point
    (INT8 with int8/uint8 io), else mean."""
    if precision == "int8" and io in ("int8", "uint8"):
        return DEFAULT_INT8_STEM_BORDER
    return DEFAULT_STEM_BORDER


def pixel_offset(preprocessing: str) -> int:
    """The whole pixel c closest (least squares in normalised units, per channel) to the
    normalisation's mean pixel: a `zero_point` border pads with c, off by |mean - c| / std."""
    mean_std = preprocessing_lib.mean_std_255(preprocessing)
    if mean_std is None:
        return 0
    mean, std = (np.array(v, np.float64) for v in mean_std)
    weights = 1.0 / std**2
    return int(np.clip(np.round(np.sum(mean * weights) / np.sum(weights)), 0, 255))


def folded_stem(model, preprocessing: str, fold: bool = True):
    """The stem `with_pixel_input` folds the normalisation into (our model's, with a normalisation
    to fold and fold=True), else None."""
    from tflite import fold as fold_lib

    if not fold or preprocessing_lib.mean_std_255(preprocessing) is None:
        return None
    return fold_lib.foldable_stem(model)


def input_offset(model, preprocessing: str, stem_border: str, fold: bool = True) -> int:
    """c such that `with_pixel_input(model, ...)` takes pixel - c (0 unless the border is
    zero_point and the normalisation is folded into our stem)."""
    if stem_border != "zero_point" or folded_stem(model, preprocessing, fold) is None:
        return 0
    return pixel_offset(preprocessing)


def with_pixel_input(
    model,
    preprocessing: str,
    input_size: tuple[int, int],
    fold: bool = True,
    stem_border: str = DEFAULT_STEM_BORDER,
):
    """Static-batch-1 model on [0, 255] pixels: normalisation (mobilenetv4.preprocessing) + `model`.

    fold=True (when `model` is ours: its first layer is the ConvBN `stem` on the input) folds the
    normalisation into the stem (`FoldedStem`): no op runs over the pixels before the first
    convolution. fold=False, or another model, puts a Normalization layer (SUB, MUL) in front.
    stem_border (STEM_BORDERS) is what the folded stem pads the pixels with: "mean" the mean pixel
    (exact: two CONCATENATIONs of constant strips, then a VALID convolution), "zero" black pixels
    (the stem's own SAME convolution on the pixels: not exact on the border, the same graph as a
    plain model on normalised input), "zero_point" the same SAME convolution on pixel - c
    (c = `input_offset`, which the returned model takes instead of pixels: a quantized
    convolution pads with its input's zero point, real 0, i.e. pixel c)."""
    import tf_keras as keras
    from tflite import fold as fold_lib

    inputs = keras.Input(shape=(*input_size, 3), batch_size=1, name="pixels")
    mean_std = preprocessing_lib.mean_std_255(preprocessing)
    if stem_border not in STEM_BORDERS:
        raise ToolError(f"--stem_border must be one of {', '.join(STEM_BORDERS)}")
    stem = folded_stem(model, preprocessing, fold)
    if stem is not None:
        mean, std = (np.array(v, np.float32) for v in mean_std)
        rest = keras.Model(stem.output, model.output, name=f"{model.name}_after_stem")
        exact = stem_border == "mean"
        mean = mean - input_offset(model, preprocessing, stem_border)  # the input is pixel - c
        x = fold_lib.FoldedStem(stem, mean, std, exact_border=exact, name="stem_on_pixels")(inputs)
        return keras.Model(inputs, rest(x), name=f"{model.name}_pixels")
    x = inputs
    if mean_std is not None:
        mean, std = (np.array(v, np.float32) for v in mean_std)
        x = keras.layers.Normalization(mean=mean, variance=std**2, name="normalize")(x)
    return keras.Model(inputs, model(x), name=f"{model.name}_pixels")  # training flag propagates


def pin_pixel_range(images: np.ndarray, offset: int = 0) -> np.ndarray:
    """Calibration pixels minus `offset` (c, what a zero_point-border model takes), with one pixel
    of the first image set to 0 - c and one to 255 - c, so that the calibrated input range is
    exactly [-c, 255 - c]: an int8 input then has scale 1 and zero point c - 128 (q = pixel - 128
    whatever c, i.e. the uint8 pixel bytes with the top bit flipped; uint8: zero point c, q = pixel)."""
    images = np.array(images, np.float32, copy=True) - np.float32(offset)
    if len(images):
        images[0, 0, 0, :] = -float(offset)
        images[0, 0, -1, :] = 255.0 - offset
    return images


def convert(
    model,
    precision: str,
    io: str = "float",
    representative: np.ndarray | None = None,
    attention_precision: str = "float",
) -> bytes:
    """Keras model with a static input -> .tflite bytes; for INT8 see ATTENTION_PRECISIONS."""
    import tensorflow as tf

    spec = tf.TensorSpec(model.inputs[0].shape, tf.float32)
    fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    # The converter saves the trackable it is given as a SavedModel first; the Keras model itself
    # would have every layer's call traced for Keras metadata (about 2/3 of the conversion time of
    # conv_small), while a plain module holding its variables gives the same flatbuffer, byte for
    # byte.
    holder = tf.Module()
    holder.model_weights = list(model.weights)
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [fn.get_concrete_function()], holder
    )
    if precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        if representative is None or not len(representative):
            raise ToolError("INT8 export needs calibration images")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([image[None]] for image in representative)
        dtype = {"uint8": tf.uint8, "int8": tf.int8, "float": tf.float32}[io]
        if attention_precision not in ATTENTION_PRECISIONS:
            raise ToolError(
                f"attention precision must be one of {', '.join(ATTENTION_PRECISIONS)}, "
                f"got {attention_precision!r}"
            )
        if attention_precision in ("float", "int8_matmul"):
            # Calibrate, then quantize with a denylist: the converter's public API has no
            # per-op switch; this is what tf.lite.experimental.QuantizationDebugger does.
            from tensorflow.lite.python import convert as convert_lib

            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                tf.lite.OpsSet.TFLITE_BUILTINS,
            ]
            converter.experimental_mlir_quantizer = True
            converter._experimental_calibrate_only = True
            from tensorflow.lite.python import util

            denylist = [
                op
                for op in FLOAT_ATTENTION_OPS
                if not (attention_precision == "int8_matmul" and op == "BATCH_MATMUL")
            ]
            quantized = convert_lib.mlir_quantize(
                converter.convert(), fully_quantize=False, denylisted_ops=denylist
            )
            if attention_precision == "int8_matmul":
                quantized = requantize.symmetric_matmul_operands(quantized)
            # Float io with QUANTIZE/DEQUANTIZE at the ends; set the io type as the converter would.
            return util.modify_model_io_type(quantized, dtype, dtype)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = dtype
        converter.inference_output_type = dtype
    elif precision != "fp32":
        raise ToolError(f"unknown precision {precision!r}; use int8, fp16 or fp32")
    return converter.convert()


def checkpoint_prefix(path: str) -> str:
    """The TF checkpoint to restore for --checkpoint PATH: the newest in a run directory (or its
    checkpoints/ sub-directory), or PATH itself when it is a checkpoint prefix (ckpt-N)."""
    import tensorflow as tf

    if os.path.isdir(path):
        for directory in (path, os.path.join(path, "checkpoints")):
            if os.path.isdir(directory):
                prefix = tf.train.latest_checkpoint(directory)
                if prefix is not None:
                    return prefix
        raise ToolError(
            f"no TF checkpoint in {path} (expected a 'checkpoint' index file and "
            "ckpt-N.index/.data files there or in its checkpoints/ sub-directory)"
        )
    if os.path.exists(path + ".index"):
        return path
    raise ToolError(f"checkpoint directory {path} does not exist")


def checkpoint_has_ema(prefix: str) -> bool:
    """Whether the trainer's checkpoint holds EMA shadow weights (tf.train.Checkpoint(ema=...))."""
    import tensorflow as tf

    return any(name.startswith("ema/") for name, _ in tf.train.list_variables(prefix))


def restore_checkpoint(model, path: str, raw_weights: bool = False) -> tuple[str, str]:
    """Restores the newest TF checkpoint of `path` (see `checkpoint_prefix`) into `model`.

    A trainer's checkpoint is tf.train.Checkpoint(model=..., optimizer=..., ema=optim.EMA(...)):
    the model's raw weights are restored through the `model` node; when the run kept an EMA and
    `raw_weights` is False, the EMA's shadow variables (`ema.averages`, one per model weight) are
    restored through an `optim.EMA` of this model and swapped in. No optimizer is built. A plain
    `model.save_weights` prefix is read with `model.load_weights`. Returns (checkpoint, "ema"|"raw").
    Only tensors are read: nothing in a checkpoint can run code."""
    import tensorflow as tf

    prefix = checkpoint_prefix(path)
    try:
        status = tf.train.Checkpoint(model=model).read(prefix)
        status.assert_existing_objects_matched()
        status.expect_partial()
    except (AssertionError, ValueError, tf.errors.OpError):
        try:
            model.load_weights(prefix).expect_partial()
        except (AssertionError, ValueError, tf.errors.OpError) as e:
            raise ToolError(
                f"checkpoint {prefix} does not match model {model.name}: "
                f"{str(e).splitlines()[0]}. Check --model, --classes and --input_size"
            ) from None
        return prefix, "raw"
    if raw_weights or not checkpoint_has_ema(prefix):
        return prefix, "raw"
    from experiments import optim

    ema = optim.EMA(model, 0.5)  # the decay does not matter: only the averages are read
    try:
        status = tf.train.Checkpoint(ema=ema).read(prefix)
        status.assert_existing_objects_matched()
        status.expect_partial()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        raise ToolError(
            f"the EMA weights in {prefix} do not match model {model.name}: "
            f"{str(e).splitlines()[0]}; pass --raw_weights to export the raw weights"
        ) from None
    ema.swap()  # the model now holds the averages
    return prefix, "ema"


def report_paths(output: str) -> tuple[str, str]:
    stem = output[: -len(".tflite")] if output.endswith(".tflite") else output
    return stem + ".report.md", stem + ".report.json"


def edgetpu_paths(output: str) -> tuple[str, str]:
    """The compiled model and log edgetpu_compiler writes next to `output`."""
    stem = os.path.splitext(output)[0]
    return stem + "_edgetpu.tflite", stem + "_edgetpu.log"


def _is_file_source(source):
    return source and os.path.exists(source) and not os.path.isdir(source)


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, -1) == labels))


def export(
    model_name: str,
    precision: str,
    output: str,
    *,
    input_size=(224, 224),
    io=None,
    weights=None,
    checkpoint=None,
    raw_weights=False,
    preprocessing="imagenet",
    calibration_source=None,
    num_calibration=300,
    num_heldout=None,
    classes=1000,
    tfds_data_dir=None,
    model_overrides=None,
    keras_model=None,
    keras_model_weights="caller's model",
    attention_precision="float",
    crop_fraction=None,
    record=None,
    overwrite=False,
    edgetpu=False,
    fold_normalization=True,
    stem_border=None,
    log=print,
) -> dict:
    """Builds (or takes) the float model, converts it, analyses the result; returns the report.

    `record` is the build record of `weights`/`checkpoint` (for the report and for naming the
    training data); the caller has already merged it into the other arguments (see `main`).
    The .tflite, its reports and the EdgeTPU outputs are written atomically (fileio); existing
    ones are refused unless `overwrite`, and none may be an input of this export."""
    from tflite import models

    io = io or ("int8" if precision == "int8" else "float")
    if io not in IO_TYPES:
        raise ToolError(f"--io must be one of {IO_TYPES}")
    if precision != "int8" and io != "float":
        raise ToolError(f"--io {io} needs --int8; FP16/FP32 models take and return float")
    if attention_precision not in ATTENTION_PRECISIONS:
        raise ToolError(f"--attention_precision must be one of {', '.join(ATTENTION_PRECISIONS)}")
    trained_on = (record or {}).get("data")
    if precision == "int8" and calibration_source is None:
        if trained_on:
            raise ToolError(
                f"INT8 export needs calibration images: this model was trained on {trained_on}; "
                f"pass --calibration {trained_on} (or --calibration random for a latency-only model)"
            )
        raise ToolError(
            "INT8 export needs calibration images from the real input pipeline: pass "
            "--calibration with a dataset spec (sklearn_digits, tfds:NAME, folder:DIR, "
            "tfrecord:GLOB), a folder of images, TFRecords or tfds:NAME:SPLIT. For a "
            "latency-only model pass --calibration random explicitly"
        )
    preprocessing_lib.mean_std_255(preprocessing)  # UserError for an unknown name
    if stem_border is not None and not fold_normalization:
        raise ToolError(
            "--stem_border applies to the normalisation folded into the stem; --no_fold keeps it "
            "as separate ops (which pad the normalised image with zeros, exactly)"
        )
    requested_border, stem_border = stem_border, stem_border or default_stem_border(precision, io)
    if stem_border not in STEM_BORDERS:
        raise ToolError(f"--stem_border must be one of {', '.join(STEM_BORDERS)}")
    if stem_border == "zero_point" and (precision != "int8" or io == "float"):
        raise ToolError(
            "--stem_border zero_point pads with the int8/uint8 input's zero point: it needs "
            "--int8 with --io int8 or uint8 (a float input has no zero point)"
        )
    if weights and checkpoint:
        raise ToolError("pass either --weights or --checkpoint, not both")
    outputs = [output, *report_paths(output)] + (list(edgetpu_paths(output)) if edgetpu else [])
    inputs = [
        weights,
        checkpoint,
        calibration_source if _is_file_source(calibration_source) else None,
    ]
    fileio.check_outputs(outputs, inputs=inputs, overwrite=overwrite)
    if weights and not (os.path.exists(weights) or os.path.exists(weights + ".index")):
        raise ToolError(f"--weights {weights} does not exist")

    t0 = time.time()
    if keras_model is not None:
        weights_kind, weights_path = keras_model_weights, None
    else:
        file_weights = weights if weights and not os.path.exists(weights + ".index") else None
        keras_model = models.build(
            model_name,
            (*input_size, 3),
            classes=classes,
            weights=file_weights,
            **(model_overrides or {}),
        )
        if checkpoint or (weights and not file_weights):
            weights_path, weights_kind = restore_checkpoint(
                keras_model, checkpoint or weights, raw_weights
            )
        elif weights:
            weights_path, weights_kind = weights, (record or {}).get("weights") or "unrecorded"
        else:
            weights_path, weights_kind = None, models.STAND_IN
    model = with_pixel_input(
        keras_model, preprocessing, input_size, fold=fold_normalization, stem_border=stem_border
    )
    folded = folded_stem(keras_model, preprocessing, fold_normalization) is not None
    if requested_border and not folded:  # nothing would use it: say so rather than ignore it
        raise ToolError(
            f"--stem_border applies to the normalisation folded into our models' stem; "
            f"{model_name} with --preprocessing {preprocessing} has none to fold (model_garden: "
            "and keras: models keep separate normalisation ops; 'none' has no normalisation)"
        )
    offset = input_offset(keras_model, preprocessing, stem_border, fold_normalization)

    source = calibration_source or "random"
    if calibration_source is None and trained_on:
        log(
            f"note: fidelity is measured on random noise; pass --calibration {trained_on} to measure "
            "held-out top-1 on the data this model was trained on"
        )
    elif trained_on and source not in ("random", trained_on):
        log(f"note: calibrating on {source}, but the model was trained on {trained_on}")
    labelled = calibration.is_trainer_spec(source) or source.startswith("tfds:")
    if num_heldout is None:
        num_heldout = LABELLED_HELDOUT if labelled else UNLABELLED_HELDOUT
    stand_in = weights_kind == models.STAND_IN
    n_cal = num_calibration if precision == "int8" else (STAND_IN_IMAGES if stand_in else 0)
    log(f"images: {n_cal} for calibration + up to {num_heldout} held out, from {source}")
    images = calibration.load(
        source,
        input_size,
        n_cal,
        num_heldout,
        crop_fraction=crop_fraction,
        num_classes=int(keras_model.output_shape[-1]),
        tfds_data_dir=tfds_data_dir,
        log=log,
    )
    if stand_in:  # on what `model` takes: pixel - offset
        models.stand_in_statistics(model, images.calibration - np.float32(offset))
        weights_kind = models.stand_in_label(len(images.calibration), source)
    log(f"weights: {weights_kind}" + (f" ({weights_path})" if weights_path else ""))
    log(
        f"converting {model_name} to {precision.upper()} (io {io}) at {input_size[0]}x{input_size[1]} ..."
    )
    representative = pin_pixel_range(images.calibration, offset) if precision == "int8" else None
    data = convert(model, precision, io, representative, attention_precision=attention_precision)
    if offset:
        check_input_offset(data, offset)
    # the reference is the float network as built, normalisation as separate ops (not folded)
    reference = with_pixel_input(keras_model, preprocessing, input_size, fold=False)
    keras_logits = reference.predict(images.heldout, batch_size=16, verbose=0)
    with fileio.atomic_path(output) as tmp:  # renamed into place only once it loads and runs
        with open(tmp, "wb") as f:
            f.write(data)
        stats = analysis.graph_stats(tmp)
        tflite_logits = runtime.run(runtime.load_interpreter(tmp, name=output), images.heldout)
    log(f"wrote {output} ({len(data) / 2**20:.2f} MiB) in {time.time() - t0:.0f} s")

    fid = analysis.fidelity(keras_logits, tflite_logits)
    fid["heldout"] = images.description
    if images.heldout_labels is not None:
        fid["keras_top1"] = top1(keras_logits, images.heldout_labels)
        fid["tflite_top1"] = top1(tflite_logits, images.heldout_labels)
    if images.note:
        fid["note"] = images.note
    report = {
        "model": model_name,
        "precision": precision,
        "io": io,
        "input_size": list(input_size),
        "attention_precision": attention_precision if precision == "int8" else None,
        "output": output,
        "calibration": source if precision == "int8" else None,
        "preprocessing": preprocessing,
        "eval_crop_fraction": crop_fraction,
        "weights": weights_kind,
        "weights_path": weights_path,
        "normalization": ("folded into the stem" if folded else "separate ops")
        if preprocessing_lib.mean_std_255(preprocessing)
        else None,
        "stem_border": stem_border if folded else None,
        "input_offset": offset,
        "feed": feed_text(io, offset),
        "build_record": build_record.describe(record) if record else None,
        "graph": stats.to_dict(),
        "fidelity": fid,
    }
    details = [f"weights: {weights_kind}" + (f" ({weights_path})" if weights_path else "")]
    if record:
        details.append(f"build record: {build_record.describe(record)}")
    if folded:
        details.append(
            "normalisation folded into the stem; border: "
            + STEM_BORDER_TEXT[stem_border].format(offset=offset)
        )
    details.append(f"input: {feed_text(io, offset)}")
    if edgetpu:
        report["edgetpu"] = _compile_edgetpu(output, log)
    title = f"{model_name} {precision.upper()} {input_size[0]}x{input_size[1]} -> {os.path.basename(output)}"
    md = analysis.format_report(stats, fid, title, details=details)
    md_path, json_path = report_paths(output)
    fileio.write_text(md_path, md)
    fileio.write_json(json_path, report)
    log(md)
    log(f"report saved to {md_path} and {json_path}")
    return report


def feed_text(io: str, offset: int) -> str:
    """What a caller feeds the exported model."""
    means = f"pixel - {offset}" if offset else "pixel"
    if io == "int8":
        return (
            f"int8 pixel - 128 (the uint8 pixels ^ 0x80 viewed as int8; scale 1, zero point "
            f"{offset - 128}: the real input is {means})"
        )
    if io == "uint8":
        return f"uint8 pixels (scale 1, zero point {offset}: the real input is {means})"
    return "float pixels in [0, 255]"


def check_input_offset(data: bytes, offset: int) -> None:
    """A zero_point-border export must take the pixel bytes (scale 1, zero point c - 128 for int8,
    c for uint8); anything else would make callers (and `tflite.runtime`) feed the wrong values."""
    from ai_edge_litert.interpreter import Interpreter

    (inp,) = Interpreter(model_content=data).get_input_details()
    scale, zero = inp["quantization"]
    expected = offset + int(np.iinfo(inp["dtype"]).min)
    if abs(scale - 1.0) > 1e-6 or zero != expected:
        raise ToolError(
            f"the converter gave the input scale {scale} and zero point {zero}, not 1 and "
            f"{expected}: the zero_point border needs the calibrated range [-{offset}, "
            f"{255 - offset}]; export with --stem_border mean"
        )


def _compile_edgetpu(output, log):
    from tflite import edgetpu

    result = edgetpu.compile_model(output)
    log(edgetpu.format_result(result))
    return {k: v for k, v in result.items() if k != "log"}


def parse_args(argv=None):
    p = cli.ArgumentParser(prog="python -m tflite.export", description=__doc__)
    p.add_argument(
        "--model",
        default=None,
        help="NAME[@H[xW]] (conv_small, hybrid_medium@256x192, ...), keras:NAME or model_garden:NAME; "
        "optional when --weights/--checkpoint carry a build record",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--weights",
        help="tf_keras weights file (.h5, .weights.h5) or a checkpoint prefix; "
        "its build record (if any) supplies the model's settings",
    )
    src.add_argument(
        "--checkpoint",
        help="a training run's directory (or its checkpoints/): the newest "
        "checkpoint, EMA weights when the run kept them",
    )
    p.add_argument(
        "--raw_weights",
        action="store_true",
        help="with --checkpoint: export the raw weights instead of the EMA weights",
    )
    prec = p.add_mutually_exclusive_group(required=True)
    for name in ("int8", "fp16", "fp32"):
        prec.add_argument(f"--{name}", dest="precision", action="store_const", const=name)
    cli.add_output_flags(
        p, required=True, help="path of the .tflite to write (reports go next to it)"
    )
    settings = p.add_argument_group("model settings (each flag overrides the build record)")
    settings.add_argument(
        "--input_size",
        type=cli.positive_int,
        nargs="+",
        metavar="H [W]",
        default=None,
        help="input height and width (default: the build record's, else the model's default)",
    )
    for key, (kind, text) in RECORD_FLAGS.items():
        settings.add_argument(f"--{key}", default=None, help=text, **kind)
    calibration = p.add_argument_group("calibration (INT8) and the held-out fidelity check")
    calibration.add_argument(
        "--calibration",
        help="random | a trainer dataset spec (sklearn_digits, tfds:NAME, folder:DIR, "
        "tfrecord:GLOB) | tfds:NAME:SPLIT | image folder | TFRecord glob",
    )
    cli.add_number_flag(calibration, "--num_calibration", 300, "calibration images")
    calibration.add_argument(
        "--num_heldout",
        type=cli.positive_int,
        default=None,
        help=f"held-out images for the fidelity check (default {LABELLED_HELDOUT} for a "
        f"labelled dataset spec, {UNLABELLED_HELDOUT} otherwise)",
    )
    calibration.add_argument("--tfds_data_dir", default=None)
    int8 = p.add_argument_group("INT8 graph")
    int8.add_argument(
        "--io",
        choices=IO_TYPES,
        default=None,
        help="INT8 input/output type (default int8: feed pixel - 128, i.e. pixels ^ 0x80; "
        "scale 1, zero point -14 with the default zero_point border, -128 with mean/zero; "
        "uint8 adds QUANTIZE ops outside XNNPACK)",
    )
    int8.add_argument(
        "--attention_precision",
        choices=ATTENTION_PRECISIONS,
        default=None,
        help="INT8 only: keep the attention matmuls and softmax in float so XNNPACK runs "
        "the whole graph (default); int8_matmul: int8 matmuls re-quantized so "
        "XNNPACK still runs the whole graph, softmax float; int8: quantize every op "
        "(default with --edgetpu)",
    )
    int8.add_argument("--edgetpu", action="store_true", help="compile with edgetpu_compiler")
    p.add_argument(
        "--stem_border",
        choices=STEM_BORDERS,
        default=None,
        help="what the folded stem pads the pixels with: mean (the mean pixel: exact, two "
        "CONCATENATIONs before the first convolution), zero (black pixels: the first "
        "convolution's own SAME padding, the same graph as a plain model on normalised input, "
        "not exact on the border) or zero_point (INT8 with int8/uint8 io: the same graph, the "
        "input's zero point set to pixel 114 for ImageNet normalisation, so the SAME padding "
        "pads with pixel 114, within 0.18 std of the mean pixel; the input bytes are unchanged: "
        "int8 pixels ^ 0x80, uint8 pixels) (default: "
        + ", ".join(f"{k} {v}" for k, v in DEFAULT_STEM_BORDER_TEXT.items())
        + ")",
    )
    p.add_argument(
        "--no_fold",
        action="store_true",
        help="keep the normalisation as separate SUB/MUL ops in front of the network instead of "
        "folding it into the first convolution (the graph before folding, for comparison)",
    )
    from tflite import accelerators  # --check ACCELERATOR, --npu VENDOR[:TARGET]

    accelerators.add_export_flags(p)
    args = p.parse_args(argv)
    if args.input_size is not None and len(args.input_size) > 2:
        p.error("--input_size takes H or H W")
    if args.raw_weights and not (
        args.checkpoint or (args.weights and os.path.exists(args.weights + ".index"))
    ):
        p.error(
            "--raw_weights applies to --checkpoint (a weights file holds one set of weights: the "
            "trainer writes the raw ones to final_raw.weights.h5)"
        )
    return args


def resolve(args, log=print) -> dict:
    """The export's settings: the build record of --weights/--checkpoint with the explicit flags
    over it (one `note:` line per overridden value). Returns export() keyword arguments plus
    'model_name'."""
    from mobilenetv4 import builder

    record_path = args.weights or args.checkpoint
    if record_path and not (os.path.exists(record_path) or os.path.exists(record_path + ".index")):
        raise ToolError(
            f"{'--weights' if args.weights else '--checkpoint'} {record_path} does not exist"
        )
    record = build_record.read(record_path) if record_path else None
    if (
        record_path
        and record is None
        and args.checkpoint
        and os.path.isdir(args.checkpoint)
        and not args.model
    ):
        raise ToolError(
            f"{args.checkpoint} has no build record ({build_record.RUN_FILE}); pass --model "
            "(and --classes / --input_size as trained)"
        )
    if record is not None and not record.get("model") and not args.model:
        return _resolve_searched(args, record)
    ref = model_names.parse(args.model, check=False) if args.model else None
    size = tuple(args.input_size) if args.input_size else (ref.size if ref and ref.size else None)
    if size is not None and len(size) == 1:
        size = (size[0], size[0])
    if ref is not None:
        explicit_model = ref.name if ref.source == "mobilenetv4" else f"{ref.source}:{ref.name}"
    else:
        explicit_model = None
    explicit = {
        "model": explicit_model,
        "input_size": list(size) if size else None,
        **{key: getattr(args, key) for key in RECORD_FLAGS},
    }
    if record is not None and record.get("eval_crop_fraction") is not None:
        record = {
            **record,
            "build": {
                **record.get("build", {}),
                "eval_crop_fraction": record["eval_crop_fraction"],
            },
        }
    merged = build_record.merge(record, explicit, log=log, source=record_path or "")
    model_name = merged.get("model")
    if not model_name:
        raise ToolError(
            "--model is required: the weights carry no build record"
            if record_path
            else "--model is required (or --weights/--checkpoint with a build record)"
        )
    build_record.check_compatible(
        record,
        explicit_model,
        {k: explicit[k] for k in explicit if k in build_record.BUILD_IDENTITY_KEYS},
        record_path or "",
    )
    if merged.get("input_size"):
        input_size = tuple(int(s) for s in merged["input_size"])
    else:
        input_size = (
            model_names.parse(model_name, check=False).resolution(224)
            if not model_name.startswith(("keras:", "model_garden:"))
            else (224, 224)
        )
    overrides = {
        k: merged[k]
        for k in RECORD_BUILD_KEYS
        if merged.get(k) is not None and k in builder.build_model.__kwdefaults__
    }
    if model_name.startswith(("keras:", "model_garden:")):
        overrides = {}
    return dict(
        model_name=model_name,
        input_size=input_size,
        classes=int(merged.get("classes") or 1000),
        preprocessing=merged.get("preprocessing") or preprocessing_lib.DEFAULT_NORMALIZATION,
        crop_fraction=merged.get("eval_crop_fraction"),
        model_overrides=overrides,
        record=record,
    )


def _resolve_searched(args, record) -> dict:
    """Settings for weights of a searched architecture (experiments.nas): the model is rebuilt
    from the record's architecture spec (never deserialised from the file) and its weights
    loaded here; export() takes it as `keras_model`."""
    from mobilenetv4 import builder, search_space
    from mobilenetv4.weights import keras_file

    arch = search_space.architecture_from_dict(record["architecture"])
    size = args.input_size or record.get("input_size") or [arch.default_size]
    size = (int(size[0]), int(size[-1]))
    classes = int(args.classes or record.get("build", {}).get("classes") or 1000)
    model = builder.build_model(arch, input_shape=(*size, 3), classes=classes)
    path = args.checkpoint or args.weights
    if args.checkpoint or os.path.exists(args.weights + ".index"):
        restore_checkpoint(model, path, args.raw_weights)
    else:
        keras_file.load_weights(model, path)
    return dict(
        model_name=f"searched:{arch.name}",
        input_size=size,
        classes=classes,
        preprocessing=args.preprocessing
        or record.get("preprocessing")
        or preprocessing_lib.DEFAULT_NORMALIZATION,
        crop_fraction=args.eval_crop_fraction or record.get("eval_crop_fraction"),
        model_overrides={},
        record=record,
        keras_model=model,
    )


@cli.entry_point
def main(argv=None):
    args = parse_args(argv)
    if args.edgetpu:
        from tflite import edgetpu

        if args.precision != "int8" or args.io == "float":
            raise ToolError(
                "--edgetpu needs a full-integer model: use --int8 with --io uint8 or int8"
            )
        edgetpu.require_compiler()
    from tflite import accelerators

    plan = accelerators.export_plan(args)  # before any work: names, SDKs, outputs
    settings = resolve(args)
    report = export(
        settings.pop("model_name"),
        args.precision,
        args.output,
        calibration_source=args.calibration,
        attention_precision=args.attention_precision or ("int8" if args.edgetpu else "float"),
        fold_normalization=not args.no_fold,
        stem_border=args.stem_border,
        **{name: getattr(args, name) for name in SAME_NAME_FLAGS},
        **settings,
    )
    report = accelerators.after_export(args, report, plan)
    return False if report.get("check_failed") else report  # exit 1 when the check failed


if __name__ == "__main__":
    cli.run(main)
