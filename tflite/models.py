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


def stand_in_statistics(model, images, batch_size: int = 32, seed: int = 0, num_batches: int = 1):
    """Makes a random-weight model behave numerically like a trained one, for latency and
    quantization tests without checkpoints: layer-scale gammas set to 1 (random init leaves them at
    1e-5, which shrinks hybrid activations towards zero stage after stage), BatchNorm betas drawn
    from N(0, 0.1^2) (zero betas give degenerate all-zero offsets no trained model has), and every
    BatchNorm's moving statistics re-estimated from training-mode passes over `images`: the first
    `num_batches` batches of `batch_size`, averaged cumulatively (each batch weighs the same)."""
    import tf_keras as keras
    import numpy as np

    bn_types = (keras.layers.BatchNormalization, keras.layers.experimental.SyncBatchNormalization)
    bns = [m for m in model.submodules if isinstance(m, bn_types)]
    for m in model.submodules:  # ours: LayerScale.gamma; Model Garden: MNV4LayerScale._gamma
        if "LayerScale" in type(m).__name__:
            gamma = m.gamma if hasattr(m, "gamma") else m._gamma
            gamma.assign(np.ones(gamma.shape, np.float32))
    rng = np.random.default_rng(seed)
    for bn in bns:
        if bn.center:
            bn.beta.assign(rng.normal(0.0, 0.1, bn.beta.shape).astype(np.float32))
    saved = [bn.momentum for bn in bns]
    try:
        for k in range(num_batches):
            batch = np.asarray(images[k * batch_size : (k + 1) * batch_size], np.float32)
            if not len(batch):
                break
            for bn in bns:
                bn.momentum = k / (k + 1)  # moving statistics := mean of the k + 1 batches' ones
            model(batch, training=True)
    finally:
        for bn, momentum in zip(bns, saved):
            bn.momentum = momentum
    return model
