"""How much a network amplifies rounding-like noise: 1% Gaussian noise (40 dB) added to the
input pixels, and to the output of the stem's BN, and the SQNR left at the logits (docs/tflite.md,
stand-in weights). Compares stand-in weights without and with kernel preconditioning, and a
trained run.

    python scripts/stand_in_noise.py [--model conv_small] [--size 128]
        [--weights RUN/final.weights.h5]
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
    args = p.parse_args(argv)
    from tflite import calibration, export, models  # after parsing: --help without TensorFlow

    size = (args.size, args.size)
    images = calibration.load("sklearn_digits", size, 64, 32, crop_fraction=1.0, log=lambda *_: 0)
    runs = [("stand-in, no preconditioning", 0), ("stand-in (default)", None)]
    if args.weights:
        runs.append((f"trained ({args.weights})", "trained"))
    for label, steps in runs:
        name = f"{args.model}@{args.size}"
        weights = args.weights if steps == "trained" else None
        model = export.with_pixel_input(
            models.build(name, classes=10, weights=weights), "imagenet", size
        )
        if steps != "trained":
            kwargs = {} if steps is None else {"precondition_steps": steps}
            models.stand_in_statistics(model, images.calibration, **kwargs)
        at_input, at_stem = noise_transfer(model, images.heldout)
        print(
            f"{label}: 40 dB noise at the input -> {at_input:.1f} dB at the logits; "
            f"at the stem's output -> {at_stem:.1f} dB"
        )


if __name__ == "__main__":
    cli.run(main)
