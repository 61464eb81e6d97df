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

import functools

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
        f"{STAND_IN} (random init, layer scale ~1, kernels preconditioned and BN statistics from "
        f"{num_images} {source} "
        "images; no trained weights: latency and quantization figures only)"
    )


PRECONDITION_STEPS = 2  # 1 step: conv_small INT8 vs Keras 23 dB at 64 px; 2 steps: 30 dB


def stand_in_statistics(
    model,
    images,
    batch_size: int = 32,
    seed: int = 0,
    num_batches: int | None = None,
    precondition_steps: int = PRECONDITION_STEPS,
):
    """Trained-like stand-in weights for a random-init model, so that latency and quantization
    figures mean something without a checkpoint. Random init is degenerate in two ways:
    - a hybrid's layer scale of 1e-5 shrinks its logits to ~1e-15 (SQNR 0 dB, denormals): the
      layer-scale gammas are drawn uniformly in [0.9, 1.1], BatchNorm betas from N(0, 0.1^2);
    - a random network with BatchNorm statistics re-estimated on data is chaotic: it amplifies
      any rounding stage after stage (measured on conv_small at 128 px: 1% noise added at the stem
      output left 8 dB at the logits, where a trained model attenuates it to 52 dB; its INT8 export
      agreed with float Keras at 4 dB). Trained layers read their input mostly along its principal
      directions, where the signal is, and ignore the rest, where rounding noise spreads evenly.
      So every pointwise or full convolution and dense kernel is preconditioned with its input's
      covariance C (measured on `images`): W <- (C / mean eigenvalue)^(1/2) W, each output channel
      keeping its variance on the input (its scale, where no BatchNorm follows: the attention
      projections; the classifier keeps its norm), then BN statistics are re-estimated;
      `precondition_steps` rounds (0: off).
    Every BatchNorm's moving statistics are re-estimated in training mode over all of `images`
    (batches of `batch_size`, cumulative average; only the first `num_batches` when given), so
    activations are O(1) everywhere. `images` are the model's own inputs (pixels for a pixel-input
    export). Returns `model`."""
    import numpy as np
    import tf_keras as keras
    import threadpoolctl

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
    images = np.asarray(images, np.float32)
    if num_batches is not None:
        images = images[: num_batches * batch_size]
    batches = [images[s : s + batch_size] for s in range(0, len(images), batch_size)]
    _reestimate(model, bns, batches)
    for _ in range(precondition_steps):
        # One BLAS thread: the matrices are small, and OpenBLAS's threads spin against any other
        # busy process (a 128x2048 SVD on 2 loaded cores: 4.2 s with 2 threads, 0.04 s with 1).
        with threadpoolctl.threadpool_limits(1, user_api="blas"):
            _precondition(model, batches, rng)
        _reestimate(model, bns, batches)
    return model


def _reestimate(model, bns, batches):
    """Every BN's moving statistics := the cumulative average of its batch statistics."""
    saved = [bn.momentum for bn in bns]
    try:
        for k, batch in enumerate(batches):
            for bn in bns:  # moving := moving * k / (k + 1) + batch / (k + 1)
                bn.momentum = k / (k + 1)
            model(batch, training=True)
    finally:
        for bn, momentum in zip(bns, saved):
            bn.momentum = momentum


def _precondition(model, batches, rng, max_rows: int = 4096):
    """W <- (C / mean eigenvalue)^(1/2) W for every dense and non-depthwise conv kernel, C the
    covariance of its input channels over `batches` (at most `max_rows` positions per batch),
    each output channel keeping its variance on that input (a Dense: its norm)."""
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    layers = [
        m
        for m in model.submodules
        if isinstance(m, (keras.layers.Conv2D, keras.layers.Dense))
        and not isinstance(m, keras.layers.DepthwiseConv2D)
    ]
    moments, calls = {}, {}

    def recording(layer, call):
        def wrapped(inputs, *args, **kwargs):
            if tf.executing_eagerly() and inputs.shape[-1] == layer.kernel.shape[-2]:
                v = np.asarray(inputs, np.float32).reshape(-1, inputs.shape[-1])
                if len(v) > max_rows:  # the cost is rows x channels^2 per layer and batch
                    v = v[rng.choice(len(v), max_rows, replace=False)]
                moments.setdefault(id(layer), _InputMoments(v.shape[1])).add(v)
            return call(inputs, *args, **kwargs)

        return wrapped

    for m in layers:  # an instance attribute shadows the class's call while recording
        calls[id(m)] = m.__dict__.get("call")
        m.call = recording(m, m.call)
    try:
        for batch in batches:
            model(batch, training=False)
    finally:
        for m in layers:
            if calls[id(m)] is None:
                del m.call
            else:
                m.call = calls[id(m)]
    for m in layers:
        if id(m) not in moments or m.kernel.shape[-2] < 2:
            continue
        w = m.kernel.numpy().astype(np.float64)
        rows = np.moveaxis(w, -2, 0).reshape(w.shape[-2], -1)  # (in, spatial x out): one BLAS call
        stats = moments[id(m)]
        new = stats.whiten(rows).reshape(w.shape[-2:-1] + w.shape[:-2] + w.shape[-1:])
        new = np.moveaxis(new, 0, -2)
        # Each output channel keeps its variance on the input (w^T C w, summed over a kernel's
        # taps), not its norm. Under a BatchNorm the two are the same up to epsilon, but the
        # attention projections (query, key, value, output) have none: keeping
        # the norm grew their outputs by sqrt(mean eig^2) / mean eig, ~5x each in hybrid_medium
        # at 128 px, so the attention logits had std 3-35 (mostly saturated softmax, where a
        # rounding error in Q or K moves the weight to another key; now 0.6-1.2) and the first
        # attention block multiplied the residual stream's rms by 16 (the UIBs after it then fell
        # below its int8 step): INT8 vs float Keras 10.5 -> 16.9 dB (docs/tflite.md).
        old_var = stats.channel_variance(rows).reshape(w.shape[:-2] + w.shape[-1:])
        new_rows = np.moveaxis(new, -2, 0).reshape(rows.shape)
        new_var = stats.channel_variance(new_rows).reshape(old_var.shape)
        per_out = lambda v: v.reshape(-1, v.shape[-1]).sum(0)
        old_var, new_var = per_out(old_var), per_out(new_var)
        norm = lambda a: np.sqrt((a.reshape(-1, a.shape[-1]) ** 2).sum(0))
        by_norm = norm(w) / np.maximum(norm(new), 1e-30)  # a channel reading a dead input
        # The classifier (a Dense, ours and Model Garden's) keeps its norm, as before: nothing
        # quantized reads the logits, and the variance rule re-weights the classes (conv_large at
        # 128 px, seed 0: INT8 vs float Keras logits 30.1 -> 24.0 dB, the classifier being the
        # only layer the rule changes in a conv model).
        usable = (old_var > 0) & (new_var > 0) & (not isinstance(m, keras.layers.Dense))
        new *= np.where(usable, np.sqrt(old_var / np.where(usable, new_var, 1.0)), by_norm)
        m.kernel.assign(new.astype(np.float32))


class _InputMoments:
    """Mean and covariance of a layer's input channels, accumulated over batches of rows.

    While there are no more rows than channels (deep layers of a small stand-in: 32 images at 64 px
    leave 128 positions for 2048 channels) the covariance has rank <= rows and its square root
    comes from the rows' SVD (rows^2 x channels) instead of a channels^3 eigendecomposition."""

    def __init__(self, channels: int):
        self.channels, self.n, self.total, self.rows, self.gram = channels, 0, 0.0, [], None

    def add(self, v):
        self.n += len(v)
        self.total = self.total + v.sum(0, dtype="float64")
        if self.gram is None and self.n > self.channels:
            self.gram = sum(r.T @ r for r in self.rows) + 0.0
            self.rows = None
        if self.gram is None:
            self.rows.append(v)
        else:
            self.gram = self.gram + v.T @ v

    @functools.cached_property
    def centred(self):
        """(the centred rows, None) while rows are kept, else (None, the covariance); read once
        every batch has been added."""
        import numpy as np

        mean = self.total / self.n
        if self.gram is not None:
            return None, self.gram / self.n - np.outer(mean, mean)
        return np.concatenate(self.rows).astype(np.float64) - mean, None

    def channel_variance(self, w):
        """diag(w^T C w): the variance of each column of w applied to the inputs."""
        import numpy as np

        x, cov = self.centred
        if cov is not None:
            return np.einsum("ij,ij->j", w, cov @ w)
        return ((x @ w) ** 2).sum(0) / self.n

    def whiten(self, w):
        """(C / mean eigenvalue)^(1/2) @ w; eigenvalues floored at 1e-12 of the largest."""
        import numpy as np

        x, cov = self.centred
        if cov is not None:
            eigenvalues, vectors = np.linalg.eigh(cov)
            eigenvalues = np.maximum(eigenvalues, 1e-12 * eigenvalues.max())
            scale = np.sqrt(eigenvalues / eigenvalues.mean())
            return vectors @ (scale[:, None] * (vectors.T @ w))
        _, s, vt = np.linalg.svd(x, full_matrices=False)  # covariance = vt.T diag(s^2 / n) vt
        eigenvalues = s**2 / self.n
        floor = 1e-12 * eigenvalues.max()
        eigenvalues = np.maximum(eigenvalues, floor)  # the other channels - rank ones are 0: floor
        mean_eigenvalue = (eigenvalues.sum() + (self.channels - len(s)) * floor) / self.channels
        scale, rest = np.sqrt(eigenvalues / mean_eigenvalue), np.sqrt(floor / mean_eigenvalue)
        return vt.T @ ((scale - rest)[:, None] * (vt @ w)) + rest * w
