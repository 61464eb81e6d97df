"""Convert a timm MobileNetV4 checkpoint (.safetensors) into tf_keras weights. No torch needed.

    python -m mobilenetv4.convert --model conv_medium --timm model.safetensors \\
        --output conv_medium.weights.h5
    python -m mobilenetv4.convert --model conv_medium.e500_r256_in1k --timm model.safetensors \\
        --output conv_medium.keras          # a whole model

`--output *.h5`: the weights plus a build record (mobilenetv4.build_record: the model, its build
arguments - symmetric padding, BN epsilon 1e-5, width, classes -, the tag's eval input size and
preprocessing, and the tag's config), so `create_model(NAME, weights=OUT)` and
`python -m tflite.export --model NAME --weights OUT` rebuild the right model with no extra flags,
and refuse the file for another model, class count or width.
`--output *.keras`: the whole model (any input size) with the same build record (a zip member
`mobilenetv4_build.json`). `create_model(NAME, weights=OUT)` reads its weights and record;
`tf_keras.models.load_model(OUT)` also works but needs this package's layers
(`import mobilenetv4` first) and deserialises the file's architecture, so use it only on files
you made yourself.

The output is written to a temporary file beside it, reloaded and checked to give the same logits
as the converted model, and only then renamed into place: a failed or interrupted conversion
leaves no partial file. An existing --output is refused without --overwrite, and the output may
never be the input checkpoint. Every user error is one `error:` line and exit code 2.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from mobilenetv4 import cli, fileio

OUTPUT_KINDS = (".h5", ".keras")


def _parse(argv):
    p = cli.ArgumentParser("python -m mobilenetv4.convert", description=__doc__)
    p.add_argument(
        "--model",
        required=True,
        help="model name (conv_small, ..., see mobilenetv4.list_models()), optionally "
        "with its pretrained tag: conv_medium.e500_r256_in1k",
    )
    p.add_argument("--timm", required=True, help="timm checkpoint: the hub's model.safetensors")
    cli.add_output_flags(p, required=True, help="*.h5 (weights + build record) or *.keras")
    p.add_argument(
        "--classes",
        type=cli.positive_int,
        default=None,
        help="classifier size; default: the checkpoint's. Another value starts a new "
        "classifier (fine-tuning) and loads everything else",
    )
    p.add_argument(
        "--width_multiplier",
        type=cli.positive_float,
        default=None,
        help="for checkpoints of a non-standard width (timm channel_multiplier)",
    )
    return p.parse_args(argv)


def _export_hint(name, output, cfg, classes):
    prep = cfg.normalization
    flags = f" --preprocessing {prep}" if prep else ""
    return (
        f"python -m tflite.export --model {name} --weights {output} --int8 "
        f"--calibration IMAGES --input_size {cfg.input_size} {cfg.input_size} "
        f"--classes {classes}{flags} --output {name}_int8.tflite"
    )


def _check_arguments(model_arg, timm_path, output, overwrite):
    from mobilenetv4.weights import keras_file  # pylint: disable=g-import-not-at-top

    if not str(output).endswith(OUTPUT_KINDS):
        raise cli.UserError(
            f"--output must end with one of {', '.join(OUTPUT_KINDS)}, got {output}"
        )
    fileio.check_outputs([output], inputs=[timm_path], overwrite=overwrite)
    if keras_file.is_keras_weights(timm_path):
        raise cli.UserError(
            f"--timm {timm_path} is a tf_keras weights file, not a timm checkpoint; "
            "pass the model.safetensors file of a timm MobileNetV4 checkpoint"
        )
    from mobilenetv4 import specs  # pylint: disable=g-import-not-at-top

    specs.get(model_arg.partition(".")[0])  # an unknown name raises, listing the names


def build_record_for(name, build, cfg) -> dict:
    """The build record of converted weights: what `create_model(weights=OUT)` rebuilds.

    Args:
      name: the registered model name.
      build: the create_model keyword arguments used (padding, bn_epsilon, classes, width).
      cfg: the checkpoint's PretrainedCfg (its tag's eval size and preprocessing).
    """
    from mobilenetv4 import build_record  # pylint: disable=g-import-not-at-top

    return build_record.make(
        name,
        build=build,
        input_size=(cfg.input_size, cfg.input_size),
        preprocessing=cfg.normalization,
        weights="raw",
        eval_crop_fraction=cfg.crop_pct,
        pretrained_cfg=dataclasses.asdict(cfg),
    )


def convert(
    model_arg, timm_path, output, classes=None, overwrite=False, width_multiplier=None, log=print
):
    """Converts a timm checkpoint, writes it atomically and verifies the written file.

    Args:
      model_arg: a model name, optionally with its pretrained tag ("conv_medium.e500_r256_in1k").
      timm_path: the timm `.safetensors` checkpoint.
      output: `*.h5` (weights + build record) or `*.keras` (whole model).
      classes: classifier size; None for the checkpoint's.
      overwrite: replace an existing output.
      width_multiplier: for checkpoints of a non-standard width.
      log: where progress lines go.

    Returns:
      The converted tf_keras model.

    Raises:
      mobilenetv4.cli.UserError: a bad argument or checkpoint (nothing is written).
    """
    _check_arguments(model_arg, timm_path, output, overwrite)
    import mobilenetv4  # pylint: disable=g-import-not-at-top
    from mobilenetv4.weights import keras_file  # pylint: disable=g-import-not-at-top

    name, _, tag = model_arg.partition(".")
    build = {"padding": "symmetric", "bn_epsilon": 1e-5}
    if classes is not None:
        build["classes"] = classes
    if width_multiplier is not None:
        build["width_multiplier"] = width_multiplier
    model = mobilenetv4.create_model(
        name, weights=timm_path, pretrained_tag=tag or None, input_shape=(None, None, 3), **build
    )
    cfg = model.pretrained_cfg
    build["classes"] = int(model.output_shape[-1])
    log(
        f"loaded {timm_path} into {name} ({model.count_params():,} parameters, {build['classes']} "
        f"classes); tag {cfg.name}: input {cfg.input_size}, crop {cfg.crop_pct}, "
        f"{cfg.interpolation}, mean {cfg.mean}, std {cfg.std}"
    )

    x = (
        np.random.default_rng(0)
        .normal(size=(1, cfg.input_size, cfg.input_size, 3))
        .astype("float32")
    )
    expected = model(x, training=False).numpy()
    with fileio.atomic_path(output) as tmp:
        from mobilenetv4 import build_record  # pylint: disable=g-import-not-at-top

        record = build_record_for(name, build, cfg)
        if output.endswith(".keras"):
            model.save(tmp)
            build_record.write_keras(tmp, record)
        else:
            keras_file.save_weights(model, tmp, record)
        # Verify the written file (weights only, as every reader here does) before it is renamed.
        reloaded = mobilenetv4.create_model(name, weights=tmp, input_shape=(None, None, 3), **build)
        diff = float(np.abs(reloaded(x, training=False).numpy() - expected).max())
        if diff > 1e-6:
            raise RuntimeError(f"{output} reloads with different outputs (max |diff| {diff:.2e})")
    log(
        f"wrote {output} ({os.path.getsize(output) / 2**20:.1f} MiB); reloaded output matches "
        f"(max |diff| {diff:.1e})"
    )
    if output.endswith(".h5"):
        log("export to TFLite with:\n  " + _export_hint(name, output, cfg, build["classes"]))
    return model


def main(argv=None):
    """`python -m mobilenetv4.convert`: returns 0; user errors raise cli.UserError (exit 2)."""
    args = _parse(argv)
    convert(args.model, args.timm, args.output, args.classes, args.overwrite, args.width_multiplier)
    return 0


if __name__ == "__main__":
    cli.run(main)
