"""Model names the exporter understands -> float Keras classifiers (tf_keras).

  conv_small, hybrid_medium, ...   our MobileNetV4 (`mobilenetv4.create_model`)
  model_garden:conv_small, ...     Model Garden's MobileNetV4 backbone + a linear classifier, for
                                   like-for-like latency comparisons (random weights)
  keras:MobileNetV3Small, ...      a keras.applications model (random weights), e.g. for baselines
"""
import difflib

from tflite import ToolError

MODEL_GARDEN_IDS = {
    "conv_small": "MobileNetV4ConvSmall", "conv_medium": "MobileNetV4ConvMedium",
    "conv_large": "MobileNetV4ConvLarge", "hybrid_medium": "MobileNetV4HybridMedium",
    "hybrid_large": "MobileNetV4HybridLarge",
}


def _ours(name, input_shape, classes, weights, **overrides):
    import mobilenetv4
    names = mobilenetv4.list_models()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        raise ToolError(f"unknown model {name!r}{f' (did you mean {close[0]!r}?)' if close else ''}; "
                        f"choose one of {', '.join(names)}, model_garden:NAME or keras:NAME")
    try:
        return mobilenetv4.create_model(name, weights=weights, input_shape=input_shape,
                                        classes=classes, **overrides)
    except FileNotFoundError as e:
        raise ToolError(str(e)) from None
    except ValueError as e:
        raise ToolError(f"{e}\nThe weights must come from `{name}` with {classes} classes; check "
                        "--model and --classes") from None


def model_garden(name, input_shape, classes=1000):
    """Model Garden's MobileNetV4 backbone (its own head: 1x1 conv 960, pool, 1x1 conv 1280) and a
    dense classifier; Model Garden ships no classifier of its own for MobileNetV4."""
    import tf_keras as keras
    from official.vision.modeling.backbones import mobilenet
    if name not in MODEL_GARDEN_IDS:
        raise ToolError(f"Model Garden has no {name!r}; choose one of {', '.join(MODEL_GARDEN_IDS)}")
    if name.startswith("hybrid") and input_shape[0] != input_shape[1]:
        raise ToolError("Model Garden's hybrid models take square inputs only (its K/V downsampling "
                        "uses the height for both sides)")
    inputs = keras.Input(shape=input_shape, batch_size=1)
    backbone = mobilenet.MobileNet(model_id=MODEL_GARDEN_IDS[name],
                                   input_specs=keras.layers.InputSpec(shape=[1, *input_shape]))
    features = backbone(inputs)
    x = keras.layers.Flatten()(features[max(features, key=int)])
    return keras.Model(inputs, keras.layers.Dense(classes, name="classifier")(x),
                       name=f"model_garden_{name}")


def keras_application(name, input_shape, classes=1000):
    import tf_keras as keras
    fn = getattr(keras.applications, name, None)
    if fn is None or not callable(fn):
        raise ToolError(f"tf_keras.applications has no model {name!r}")
    kwargs = {"include_preprocessing": False} if "MobileNetV3" in name else {}
    return fn(input_shape=input_shape, weights=None, classes=classes, classifier_activation=None,
              **kwargs)


def build(name: str, input_shape: tuple[int, int, int], *, classes: int = 1000,
          weights: str | None = None, **overrides):
    """A float Keras model for `name`; `weights` only for our models (a tf_keras weights file)."""
    source, _, rest = name.partition(":")
    if rest and source in ("model_garden", "keras"):
        if weights:
            raise ToolError(f"--weights/--checkpoint apply to our models only, not {name!r}")
        return (model_garden if source == "model_garden" else keras_application)(rest, input_shape, classes)
    return _ours(name, input_shape, classes, weights, **overrides)


def stand_in_statistics(model, images, batch_size: int = 32, seed: int = 0):
    """Makes a random-weight model behave numerically like a trained one, for latency and
    quantization tests without checkpoints: layer-scale gammas set to 1 (random init leaves them at
    1e-5, which shrinks hybrid activations towards zero stage after stage), BatchNorm betas drawn
    from N(0, 0.1^2) (zero betas give degenerate all-zero offsets no trained model has), and every
    BatchNorm's moving statistics re-estimated from one training-mode pass over `images`."""
    import tf_keras as keras
    import numpy as np
    bns = [m for m in model.submodules if isinstance(m, keras.layers.BatchNormalization)]
    for m in model.submodules:  # ours: LayerScale.gamma; Model Garden: MNV4LayerScale._gamma
        if "LayerScale" in type(m).__name__:
            gamma = m.gamma if hasattr(m, "gamma") else m._gamma
            gamma.assign(np.ones(gamma.shape, np.float32))
    rng = np.random.default_rng(seed)
    for bn in bns:
        if bn.center:
            bn.beta.assign(rng.normal(0.0, 0.1, bn.beta.shape).astype(np.float32))
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.momentum = 0.0  # moving statistics := this batch's statistics
    try:
        model(np.asarray(images[:batch_size], np.float32), training=True)
    finally:
        for bn, momentum in zip(bns, saved):
            bn.momentum = momentum
    return model
