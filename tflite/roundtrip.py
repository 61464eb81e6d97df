"""Self-check: export models at a reduced size in every precision and compare each .tflite with
its float Keras model (random weights with stand-in statistics, random images).

    python -m tflite.roundtrip --models conv_small,hybrid_medium --size 64 --output_dir /tmp/rt

Prints one line per export as it finishes, then the table: SQNR of the logits, top-1 agreement,
TRANSPOSE count, partitions. Existing exports in OUTPUT_DIR are refused unless --overwrite.
The tests run this for all five paper models.
"""

import os

import numpy as np

from mobilenetv4 import cli, fileio, tables

PAPER_MODELS = ("conv_small", "conv_medium", "conv_large", "hybrid_medium", "hybrid_large")
PRECISIONS = ("fp32", "fp16", "int8")


def output_path(out_dir: str, name: str, size: int, precision: str) -> str:
    return os.path.join(out_dir, f"{name.replace(':', '_')}_{size}_{precision}.tflite")


def roundtrip(
    name: str,
    out_dir: str,
    size: int = 64,
    precisions=PRECISIONS,
    num_calibration: int = 8,
    num_heldout: int = 8,
    overwrite: bool = False,
    log=lambda *_: None,
) -> dict:
    """{precision: export report} for `name` exported at size x size."""
    import tf_keras as keras
    from tflite import export, models

    keras.utils.set_random_seed(0)
    model = models.build(name, (size, size, 3))
    images = np.random.default_rng(1).normal(size=(32, size, size, 3)).astype(np.float32)
    models.stand_in_statistics(model, images)  # input space of the network: normalised pixels
    weights = models.stand_in_label(len(images), "normal-noise")
    reports = {}
    for precision in precisions:
        out = output_path(out_dir, name, size, precision)
        reports[precision] = export.export(
            name,
            precision,
            out,
            input_size=(size, size),
            keras_model=model,
            keras_model_weights=weights,
            calibration_source="random",
            num_calibration=num_calibration,
            num_heldout=num_heldout,
            overwrite=overwrite,
            log=log,
        )
    return reports


def parse_args(argv=None):
    p = cli.ArgumentParser("python -m tflite.roundtrip", __doc__)
    cli.add_models_flag(p, "comma-separated model names", default=PAPER_MODELS)
    cli.add_number_flag(p, "--size", 64, "square input side in pixels")
    cli.add_output_flags(p, kind="dir", required=True, help="folder for the exports")
    p.add_alias("--out_dir", "--output_dir")
    args = p.parse_args(argv)
    if args.size < 32:
        p.error(f"argument --size: the models need at least 32 pixels, got {args.size}")
    return args


def main(argv=None):
    from tflite import models

    args = parse_args(argv)
    specs = [models.resolve(f"{name}@{args.size}") for name in args.models]
    fileio.check_writable_dir(args.output_dir)
    outputs = [
        output_path(args.output_dir, s.display_name, args.size, p)
        for s in specs
        for p in PRECISIONS
    ]
    fileio.check_outputs(outputs, overwrite=args.overwrite)
    table = tables.Table(
        ["model", "precision", "logits SQNR (dB)", "top-1 agreement", "TRANSPOSE", "partitions"]
    )
    for spec in specs:
        for precision, r in roundtrip(
            spec.display_name, args.output_dir, args.size, overwrite=args.overwrite
        ).items():
            g, f = r["graph"], r["fidelity"]
            table.add(
                [
                    spec.display_name,
                    precision,
                    f"{f['sqnr_db']:.1f}",
                    f"{100 * f['top1_agreement']:.0f}%",
                    str(g["transposes"]),
                    str(g["delegate_partitions"]),
                ]
            )
            print(f"{spec.display_name} {precision}: SQNR {f['sqnr_db']:.1f} dB", flush=True)
    print(table.markdown(), end="")
    print(f"weights: {models.stand_in_label(32, 'normal-noise')}")


if __name__ == "__main__":
    cli.run(main)
