"""Convert a timm MobileNetV4 checkpoint (.safetensors) into tf_keras weights. No torch needed.

    python -m mobilenetv4.convert --model conv_medium --timm model.safetensors \
        --output conv_medium.weights.h5
    python -m mobilenetv4.convert --model conv_medium.e500_r256_in1k --timm model.safetensors \
        --output conv_medium.keras          # a whole model, loadable without this package

`--output *.h5`: weights plus their build arguments (symmetric padding, BN epsilon, width,
classes, pretrained tag), so `create_model(NAME, weights=OUT)` and
`python -m tflite.export --model NAME --weights OUT` rebuild the right model with no extra flags.
`--output *.keras`: the whole model (any input size).
Afterwards the output is reloaded and checked to give the same logits as the converted model.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from mobilenetv4.weights.safetensors_file import CheckpointError

OUTPUT_KINDS = (".h5", ".keras")


def _parse(argv):
  p = argparse.ArgumentParser(prog="python -m mobilenetv4.convert", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--model", required=True,
                 help="model name (conv_small, ..., see mobilenetv4.list_models()), optionally "
                      "with its pretrained tag: conv_medium.e500_r256_in1k")
  p.add_argument("--timm", required=True, help="timm checkpoint: the hub's model.safetensors")
  p.add_argument("--output", required=True, help="*.h5 (weights + build record) or *.keras")
  p.add_argument("--classes", type=int, default=None,
                 help="classifier size; default: the checkpoint's. Another value starts a new "
                      "classifier (fine-tuning) and loads everything else")
  p.add_argument("--width_multiplier", type=float, default=None,
                 help="for checkpoints of a non-standard width (timm channel_multiplier)")
  p.add_argument("--overwrite", action="store_true", help="replace an existing --output")
  return p.parse_args(argv)


def _export_hint(name, output, cfg, classes):
  prep = {(0.485, 0.456, 0.406): "imagenet", (0.5, 0.5, 0.5): "inception"}.get(tuple(cfg.mean))
  flags = f" --preprocessing {prep}" if prep else ""
  return (f"python -m tflite.export --model {name} --weights {output} --int8 "
          f"--calibration IMAGES --input_size {cfg.input_size} {cfg.input_size} "
          f"--classes {classes}{flags} --output {name}_int8.tflite")


def convert(model_arg, timm_path, output, classes=None, overwrite=False, width_multiplier=None,
            log=print):
  """Converts and verifies; returns the converted model."""
  import tf_keras as keras

  import mobilenetv4
  from mobilenetv4.weights import keras_file

  if not output.endswith(OUTPUT_KINDS):
    raise ValueError(f"--output must end with one of {OUTPUT_KINDS}, got {output!r}")
  if os.path.exists(output) and not overwrite:
    raise ValueError(f"{output} exists; pass --overwrite to replace it")
  out_dir = os.path.dirname(os.path.abspath(output))
  if not os.path.isdir(out_dir):
    raise ValueError(f"output folder {out_dir} does not exist")
  name, _, tag = model_arg.partition(".")
  build = {"padding": "symmetric", "bn_epsilon": 1e-5}
  if classes is not None:
    build["classes"] = classes
  if width_multiplier is not None:
    build["width_multiplier"] = width_multiplier
  model = mobilenetv4.create_model(name, weights=timm_path, pretrained_tag=tag or None,
                                   input_shape=(None, None, 3), **build)
  cfg = model.pretrained_cfg
  classes = int(model.output_shape[-1])
  log(f"loaded {timm_path} into {name} ({model.count_params():,} parameters, {classes} classes); "
      f"tag {cfg.name}: input {cfg.input_size}, crop {cfg.crop_pct}, {cfg.interpolation}, "
      f"mean {cfg.mean}, std {cfg.std}")

  x = np.random.default_rng(0).normal(size=(1, cfg.input_size, cfg.input_size, 3)).astype("float32")
  expected = model(x, training=False).numpy()
  if output.endswith(".keras"):
    model.save(output)
    reloaded = keras.models.load_model(output)
  else:
    build["classes"] = classes
    keras_file.save_weights_with_build(model, output, name, build, cfg)
    reloaded = mobilenetv4.create_model(name, weights=output, input_shape=(None, None, 3))
  diff = float(np.abs(reloaded(x, training=False).numpy() - expected).max())
  if diff > 1e-6:
    raise RuntimeError(f"{output} reloads with different outputs (max |diff| {diff:.2e})")
  log(f"wrote {output} ({os.path.getsize(output) / 2**20:.1f} MiB); reloaded output matches "
      f"(max |diff| {diff:.1e})")
  if output.endswith(".h5"):
    log("export to TFLite with:\n  " + _export_hint(name, output, cfg, classes))
  return model


def main(argv=None):
  args = _parse(argv)
  try:
    convert(args.model, args.timm, args.output, args.classes, args.overwrite,
            args.width_multiplier)
  except (CheckpointError, ValueError, TypeError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
