"""Export a MobileNetV4 classifier to TFLite (INT8 full-integer, FP16 or FP32) and report on it.

    python -m tflite.export --model conv_small --int8 --calibration /data/imagenet_val_folder \
        --output conv_small_int8.tflite
    python -m tflite.export --model hybrid_medium --fp16 --output hm_fp16.tflite
    python -m tflite.export --model conv_small --int8 --calibration random --output cs.tflite  # latency only

The exported graph takes pixels in [0, 255] (normalisation is part of the graph), static batch 1.
INT8: weights and activations int8, calibrated on --num_calibration images of --calibration;
--io sets the input/output type (uint8 by default: the input scale is then 1, zero point 0).
After export a report (op histogram, TRANSPOSE count, XNNPACK partitions, size, fidelity against the
float Keras model on held-out images) is printed and saved as OUTPUT.report.md / .report.json.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

from tflite import ToolError, analysis, calibration, exit_on_tool_error, requantize, runtime

PREPROCESSING = {  # (mean, std) of the input the network was trained on, in [0, 1] pixel units
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "inception": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "none": None,  # the exported model takes exactly what the Keras model takes
}
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


def with_pixel_input(model, preprocessing: str, input_size: tuple[int, int]):
    """Static-batch-1 model on [0, 255] pixels: normalisation + `model`."""
    import tf_keras as keras
    inputs = keras.Input(shape=(*input_size, 3), batch_size=1, name="pixels")
    x = inputs
    if PREPROCESSING[preprocessing] is not None:
        mean, std = (np.array(v, np.float32) * 255.0 for v in PREPROCESSING[preprocessing])
        x = keras.layers.Normalization(mean=mean, variance=std ** 2, name="normalize")(x)
    return keras.Model(inputs, model(x), name=f"{model.name}_pixels")  # training flag propagates


def convert(model, precision: str, io: str = "float", representative: np.ndarray | None = None,
            attention_precision: str = "float") -> bytes:
    """Keras model with a static input -> .tflite bytes; for INT8 see ATTENTION_PRECISIONS."""
    import tensorflow as tf
    spec = tf.TensorSpec(model.inputs[0].shape, tf.float32)
    fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], model)
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
            raise ToolError(f"attention precision must be one of {', '.join(ATTENTION_PRECISIONS)}, "
                            f"got {attention_precision!r}")
        if attention_precision in ("float", "int8_matmul"):
            # Calibrate, then quantize with a denylist: the converter's public API has no
            # per-op switch; this is what tf.lite.experimental.QuantizationDebugger does.
            from tensorflow.lite.python import convert as convert_lib
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                                   tf.lite.OpsSet.TFLITE_BUILTINS]
            converter.experimental_mlir_quantizer = True
            converter._experimental_calibrate_only = True
            from tensorflow.lite.python import util
            denylist = [op for op in FLOAT_ATTENTION_OPS
                        if not (attention_precision == "int8_matmul" and op == "BATCH_MATMUL")]
            quantized = convert_lib.mlir_quantize(converter.convert(), fully_quantize=False,
                                                  denylisted_ops=denylist)
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


def restore_checkpoint(model, directory: str) -> str:
    """Restores the newest TF checkpoint in `directory` into `model` (a trainer's
    tf.train.Checkpoint(model=...) or a model.save_weights prefix)."""
    import tensorflow as tf
    if not os.path.isdir(directory):
        raise ToolError(f"checkpoint directory {directory} does not exist")
    path = tf.train.latest_checkpoint(directory)
    if path is None:
        raise ToolError(f"no TF checkpoint in {directory} (expected a 'checkpoint' index file and "
                        "ckpt-N.index/.data files)")
    try:
        tf.train.Checkpoint(model=model).read(path).assert_existing_objects_matched()
        return path
    except (AssertionError, ValueError, tf.errors.OpError):
        pass
    try:
        model.load_weights(path)
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        raise ToolError(f"checkpoint {path} does not match model {model.name}: "
                        f"{str(e).splitlines()[0]}. Check --model, --classes and --input_size") from None
    return path


def check_output_path(path: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ToolError(f"--output {path} is a directory; give a file name such as {path}/model.tflite")
    if not os.path.isdir(parent):
        raise ToolError(f"cannot write --output {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise ToolError(f"cannot write --output {path}: permission denied; choose another path")


def report_paths(output: str) -> tuple[str, str]:
    stem = output[:-len(".tflite")] if output.endswith(".tflite") else output
    return stem + ".report.md", stem + ".report.json"


def export(model_name: str, precision: str, output: str, *, input_size=(224, 224), io=None,
           weights=None, checkpoint=None, calibration_source=None, num_calibration=300,
           num_heldout=64, preprocessing="imagenet", classes=1000, tfds_data_dir=None,
           model_overrides=None, keras_model=None, attention_precision="float", log=print) -> dict:
    """Builds (or takes) the float model, converts it, analyses the result. Returns the report dict."""
    from tflite import models
    io = io or ("uint8" if precision == "int8" else "float")
    if io not in IO_TYPES:
        raise ToolError(f"--io must be one of {IO_TYPES}")
    if precision != "int8" and io != "float":
        raise ToolError(f"--io {io} needs --int8; FP16/FP32 models take and return float")
    if precision == "int8" and calibration_source is None:
        raise ToolError("INT8 export needs calibration images from the real input pipeline: pass "
                        "--calibration with a folder of images, TFRecords or tfds:NAME[:SPLIT]. For a "
                        "latency-only model pass --calibration random explicitly")
    if preprocessing not in PREPROCESSING:
        raise ToolError(f"--preprocessing must be one of {sorted(PREPROCESSING)}")
    check_output_path(output)
    for path in report_paths(output):
        check_output_path(path)
    if weights and checkpoint:
        raise ToolError("pass either --weights or --checkpoint, not both")

    t0 = time.time()
    if keras_model is None:
        keras_model = models.build(model_name, (*input_size, 3), classes=classes, weights=weights,
                                   **(model_overrides or {}))
        if checkpoint:
            log(f"restored {restore_checkpoint(keras_model, checkpoint)}")
    model = with_pixel_input(keras_model, preprocessing, input_size)
    source = calibration_source or "random"
    n_cal = num_calibration if precision == "int8" else 0
    log(f"images: {n_cal} for calibration + {num_heldout} held out, from {source}")
    cal, heldout, note = calibration.load_split(source, input_size, n_cal, num_heldout,
                                                tfds_data_dir=tfds_data_dir, log=log)
    log(f"converting {model_name} to {precision.upper()} (io {io}) at {input_size[0]}x{input_size[1]} ...")
    data = convert(model, precision, io, cal, attention_precision=attention_precision)
    with open(output, "wb") as f:
        f.write(data)
    log(f"wrote {output} ({len(data) / 2**20:.2f} MiB) in {time.time() - t0:.0f} s")

    stats = analysis.graph_stats(output)
    keras_logits = model.predict(heldout, batch_size=16, verbose=0)
    tflite_logits = runtime.run(runtime.load_interpreter(output), heldout)
    fid = analysis.fidelity(keras_logits, tflite_logits)
    if note:
        fid["note"] = note
    title = f"{model_name} {precision.upper()} {input_size[0]}x{input_size[1]} -> {os.path.basename(output)}"
    md = analysis.format_report(stats, fid, title)
    md_path, json_path = report_paths(output)
    with open(md_path, "w") as f:
        f.write(md)
    report = {"model": model_name, "precision": precision, "io": io, "input_size": list(input_size),
              "attention_precision": attention_precision if precision == "int8" else None,
              "output": output, "calibration": source if precision == "int8" else None,
              "preprocessing": preprocessing, "graph": stats.to_dict(), "fidelity": fid}
    with open(json_path, "w") as f:
        json.dump(report, f, indent=2)
    log(md)
    log(f"report saved to {md_path} and {json_path}")
    return report


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m tflite.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="conv_small, hybrid_medium, ..., model_garden:NAME, keras:NAME")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--weights", help="tf_keras weights file (.h5, .weights.h5, checkpoint prefix)")
    src.add_argument("--checkpoint", help="directory of a training run's TF checkpoints (newest is used)")
    prec = p.add_mutually_exclusive_group(required=True)
    for name in ("int8", "fp16", "fp32"):
        prec.add_argument(f"--{name}", dest="precision", action="store_const", const=name)
    p.add_argument("--output", required=True, help="path of the .tflite to write")
    p.add_argument("--input_size", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help="input height and width (default: the model's default resolution)")
    p.add_argument("--calibration", help="random | tfds:NAME[:SPLIT] | image folder | TFRecord glob")
    p.add_argument("--num_calibration", type=int, default=300, help="calibration images (default 300)")
    p.add_argument("--num_heldout", type=int, default=64, help="held-out images for the fidelity check")
    p.add_argument("--io", choices=IO_TYPES, default=None, help="INT8 input/output type (default uint8)")
    p.add_argument("--preprocessing", choices=sorted(PREPROCESSING), default="imagenet",
                   help="normalisation folded into the graph (default imagenet mean/std)")
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--tfds_data_dir", default=None)
    p.add_argument("--attention_precision", choices=ATTENTION_PRECISIONS, default=None,
                   help="INT8 only: keep the attention matmuls and softmax in float so XNNPACK runs "
                        "the whole graph (default); int8_matmul: int8 matmuls re-quantized so "
                        "XNNPACK still runs the whole graph, softmax float; int8: quantize every op "
                        "(default with --edgetpu)")
    p.add_argument("--edgetpu", action="store_true", help="compile with edgetpu_compiler (INT8 only)")
    return p.parse_args(argv)


def default_size(model_name: str) -> tuple[int, int]:
    if ":" in model_name:
        return (224, 224)
    import mobilenetv4
    try:
        size = mobilenetv4.get_architecture(model_name).default_size
    except ValueError as e:
        raise ToolError(str(e)) from None
    return (size, size) if isinstance(size, int) else tuple(size)[:2]


@exit_on_tool_error
def main(argv=None):
    args = parse_args(argv)
    if args.edgetpu:
        from tflite import edgetpu
        if args.precision != "int8" or args.io == "float":
            raise ToolError("--edgetpu needs a full-integer model: use --int8 with --io uint8 or int8")
        edgetpu.require_compiler()
    if args.num_calibration < 1 or args.num_heldout < 1:
        raise ToolError("--num_calibration and --num_heldout must be at least 1")
    size = tuple(args.input_size) if args.input_size else default_size(args.model)
    report = export(args.model, args.precision, args.output, input_size=size, io=args.io,
                    weights=args.weights, checkpoint=args.checkpoint,
                    calibration_source=args.calibration, num_calibration=args.num_calibration,
                    num_heldout=args.num_heldout, preprocessing=args.preprocessing,
                    classes=args.classes, tfds_data_dir=args.tfds_data_dir,
                    attention_precision=args.attention_precision or ("int8" if args.edgetpu else "float"))
    if args.edgetpu:
        result = edgetpu.compile_model(args.output)
        print(edgetpu.format_result(result))
        report["edgetpu"] = {k: v for k, v in result.items() if k != "log"}
        with open(report_paths(args.output)[1], "w") as f:
            json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
