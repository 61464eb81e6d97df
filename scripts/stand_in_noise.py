"""How much a network amplifies rounding-like noise: 1% Gaussian noise (40 dB) added to the
input pixels, and to the output of the stem's BN, and the SQNR left at the logits (docs/tflite.md,
stand-in weights). Compares stand-in weights without and with kernel preconditioning, and a
trained run. With --int8, also each model's own INT8 export (float io, attention core in float,
calibrated on the same 64 images) against its float Keras model on the 32 held-out images, as the
"CPU INT8 vs Keras" column of docs/tflite.md's accelerator tables (which has 1000 classes; --classes).

    python scripts/stand_in_noise.py [--model conv_small] [--size 128]
        [--weights RUN/final.weights.h5] [--int8] [--seed 0] [--classes 10] [--only_default]
"""

import numpy as np

from mobilenetv4 import cli


def noise_transfer(model, images, layer_name="stem_on_pixels"):
    """(input -> logits, stem output -> logits) SQNR in dB for 40 dB white noise."""
    import tensorflow as tf

    from tflite import analysis

    clean = model(images, training=False).numpy()
    rng = np.random.default_rng(1)
    noise = rng.normal(size=images.shape) * 1e-2 * np.sqrt((images**2).mean())
    at_input = analysis.sqnr_db(clean, model(images + noise.astype(np.float32)).numpy())
    stem = model.get_layer(layer_name)
    call = stem.call

    def noisy(*args, **kwargs):
        y = call(*args, **kwargs)
        return y + tf.random.stateless_normal(tf.shape(y), [1, 2]) * 1e-2 * tf.sqrt(
            tf.reduce_mean(y**2)
        )

    stem.call = noisy
    try:
        at_stem = analysis.sqnr_db(clean, model(images, training=False).numpy())
    finally:
        del stem.call
    return at_input, at_stem


def main(argv=None):
    p = cli.ArgumentParser("python scripts/stand_in_noise.py", __doc__)
    p.add_argument("--model", default="conv_small")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--weights", help="a trained run's weights (10 classes, sklearn digits)")
    p.add_argument("--int8", action="store_true", help="also the INT8 export's SQNR vs float Keras")
    p.add_argument("--seed", type=int, help="seed of the random init (default: unseeded)")
    p.add_argument("--classes", type=int, default=10, help="classifier width (default 10)")
    p.add_argument(
        "--only_default", action="store_true", help="skip the stand-in without preconditioning"
    )
    args = p.parse_args(argv)
    from tflite import analysis, calibration, export, models, runtime  # after parsing (--help)

    size = (args.size, args.size)
    images = calibration.load("sklearn_digits", size, 64, 32, crop_fraction=1.0, log=lambda *_: 0)
    runs = [("stand-in, no preconditioning", 0)] * (not args.only_default)
    runs.append(("stand-in (default)", None))
    if args.weights:
        runs.append((f"trained ({args.weights})", "trained"))
    for label, steps in runs:
        name = f"{args.model}@{args.size}"
        weights = args.weights if steps == "trained" else None
        if args.seed is not None:
            import tf_keras as keras

            keras.utils.set_random_seed(args.seed)
        classes = 10 if steps == "trained" else args.classes
        model = export.with_pixel_input(
            models.build(name, classes=classes, weights=weights), "imagenet", size
        )
        if steps != "trained":
            kwargs = {} if steps is None else {"precondition_steps": steps}
            models.stand_in_statistics(model, images.calibration, **kwargs)
        at_input, at_stem = noise_transfer(model, images.heldout)
        int8 = ""
        if args.int8:
            data = export.convert(model, "int8", representative=images.calibration)
            logits = runtime.run(runtime.load_interpreter(data), images.heldout)
            reference = model.predict(images.heldout, batch_size=16, verbose=0)
            int8 = f"; INT8 vs float Keras {analysis.sqnr_db(reference, logits):.1f} dB"
        print(
            f"{label}: 40 dB noise at the input -> {at_input:.1f} dB at the logits; "
            f"at the stem's output -> {at_stem:.1f} dB{int8}",
            flush=True,
        )


if __name__ == "__main__":
    cli.run(main)
