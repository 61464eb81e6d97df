"""Self-check: export models at a reduced size in every precision and compare each .tflite with
its float Keras model (random weights with stand-in statistics, random images).

    python -m tflite.roundtrip --models conv_small hybrid_medium --size 64 --out_dir /tmp/rt

Prints one line per export: SQNR of the logits, top-1 agreement, TRANSPOSE count, partitions.
The tests run this for all five paper models.
"""
import argparse
import os

import numpy as np

from tflite import exit_on_tool_error

PAPER_MODELS = ("conv_small", "conv_medium", "conv_large", "hybrid_medium", "hybrid_large")


def roundtrip(name: str, out_dir: str, size: int = 64, precisions=("fp32", "fp16", "int8"),
              num_calibration: int = 8, num_heldout: int = 8, log=lambda *_: None) -> dict:
    """{precision: export report} for `name` exported at size x size."""
    import tf_keras as keras
    from tflite import export, models
    keras.utils.set_random_seed(0)
    model = models.build(name, (size, size, 3))
    images = np.random.default_rng(1).normal(size=(32, size, size, 3)).astype(np.float32)
    models.stand_in_statistics(model, images)  # input space of the network: normalised pixels
    reports = {}
    for precision in precisions:
        out = os.path.join(out_dir, f"{name}_{size}_{precision}.tflite")
        reports[precision] = export.export(
            name, precision, out, input_size=(size, size), keras_model=model,
            calibration_source="random", num_calibration=num_calibration, num_heldout=num_heldout,
            log=log)
    return reports


@exit_on_tool_error
def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tflite.roundtrip", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(PAPER_MODELS))
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--out_dir", required=True)
    args = p.parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    print("| model | precision | logits SQNR (dB) | top-1 agreement | TRANSPOSE | partitions |")
    print("|---|---|---|---|---|---|")
    for name in args.models:
        for precision, r in roundtrip(name, args.out_dir, args.size).items():
            g, f = r["graph"], r["fidelity"]
            print(f"| {name} | {precision} | {f['sqnr_db']:.1f} | {100 * f['top1_agreement']:.0f}% | "
                  f"{g['transposes']} | {g['delegate_partitions']} |", flush=True)


if __name__ == "__main__":
    main()
