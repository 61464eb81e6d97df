"""Model names -> float Keras classifiers (tf_keras), for the export, the benchmarks' tables, the
latency measurement and the comparisons: the tools' side of the one resolver,
`mobilenetv4.roofline.zoo.resolve` (grammar: `mobilenetv4.model_names`).

  conv_small, hybrid_medium@256x192, ...  our MobileNetV4 (`mobilenetv4.create_model`)
  model_garden:conv_small, ...            Model Garden's MobileNetV4 backbone + a linear classifier,
                                          for like-for-like latency comparisons (random weights)
  keras:MobileNetV3Small, mobilenet_v2_100, ...
                                          a keras.applications model (random weights), for baselines

Without @H[xW] a MobileNetV4 gets its `Architecture.default_size` (Model Garden's the same as ours).
"""

from mobilenetv4.cli import UserError
from mobilenetv4.roofline.zoo import MODEL_GARDEN_IDS, ModelSpec, parse_list, resolve  # noqa: F401


def build(
    name: str,
    input_shape: tuple[int, int, int] | None = None,
    *,
    classes: int = 1000,
    weights: str | None = None,
    **overrides,
):
    """A float Keras model for the model name `name` (`NAME[@H[xW]]`, `keras:NAME`,
    `model_garden:NAME`); `input_shape` (H, W, 3) defaults to the name's resolution. `weights` (a
    tf_keras weights file) and `overrides` (create_model arguments) apply to our models only."""
    spec = resolve(name)
    if input_shape is not None:
        shape = tuple(input_shape[:2])
        if "@" in name and shape != spec.resolution:
            raise UserError(
                f"model {name!r} names the size {spec.size_text} but the input size is "
                f"{shape[0]}x{shape[1]}; give the size once"
            )
        if spec.source == "model_garden" and spec.has_attention and shape[0] != shape[1]:
            raise UserError(
                "Model Garden's hybrid models take square inputs only (its K/V "
                "downsampling uses the height for both sides)"
            )
        spec = ModelSpec(
            spec.name, spec.source, spec.family, shape, spec.builder, spec.has_attention
        )
    if spec.source != "mobilenetv4":
        if weights:
            raise UserError(f"--weights/--checkpoint apply to our models only, not {name!r}")
        if overrides:
            raise UserError(
                f"{', '.join(sorted(overrides))} apply to our models only, not {name!r}"
            )
        return spec.build(classes)
    try:
        return spec.build(classes, weights=weights, **overrides)
    except FileNotFoundError as e:
        raise UserError(str(e)) from None
    except UserError:
        raise
    except ValueError as e:
        raise UserError(
            f"{e}; the weights must come from `{spec.name}` with {classes} classes: "
            "check --model and --classes"
        ) from None


STAND_IN = "stand-in"  # the `weights` of a report for a model exported without weights


def stand_in_label(num_images: int, source: str) -> str:
    """What a report says about stand-in weights (see `stand_in_statistics`)."""
    return (
        f"{STAND_IN} (random init, layer scale ~1, BN statistics from {num_images} {source} "
        "images; no trained weights: latency and quantization figures only)"
    )


def stand_in_statistics(
    model, images, batch_size: int = 32, seed: int = 0, num_batches: int | None = None
):
    """Trained-like stand-in weights for a random-init model, so that latency and quantization
    figures mean something without a checkpoint (random init is numerically degenerate: a hybrid's
    layer scale of 1e-5 shrinks its logits to ~1e-15, SQNR 0 dB, and float attention may run on
    denormals). Keeps the random kernels; layer-scale gammas drawn uniformly in [0.9, 1.1];
    BatchNorm betas from N(0, 0.1^2) (zero betas give degenerate all-zero offsets no trained model
    has); every BatchNorm's moving statistics re-estimated in training mode over all of `images`
    (batches of `batch_size`, cumulative average; only the first `num_batches` when given), so
    activations are O(1) everywhere. `images` are the model's own inputs (pixels for a pixel-input
    export). Returns `model`."""
    import tf_keras as keras
    import numpy as np

    bn_types = (keras.layers.BatchNormalization, keras.layers.experimental.SyncBatchNormalization)
    bns = [m for m in model.submodules if isinstance(m, bn_types)]
    rng = np.random.default_rng(seed)
    for m in model.submodules:  # ours: LayerScale.gamma; Model Garden: MNV4LayerScale._gamma
        if "LayerScale" in type(m).__name__:
            gamma = m.gamma if hasattr(m, "gamma") else m._gamma
            gamma.assign(rng.uniform(0.9, 1.1, gamma.shape).astype(np.float32))
    for bn in bns:
        if bn.center:
            bn.beta.assign(rng.normal(0.0, 0.1, bn.beta.shape).astype(np.float32))
    saved = [bn.momentum for bn in bns]
    images = np.asarray(images, np.float32)
    if num_batches is not None:
        images = images[: num_batches * batch_size]
    try:
        for k, start in enumerate(range(0, len(images), batch_size)):
            for bn in bns:  # moving := moving * k / (k + 1) + batch / (k + 1)
                bn.momentum = k / (k + 1)
            model(images[start : start + batch_size], training=True)
    finally:
        for bn, momentum in zip(bns, saved):
            bn.momentum = momentum
    return model
