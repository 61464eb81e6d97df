"""Optimisation pieces of the paper's recipe (Table 10): schedule, AdamW, EMA.

Library code: plain arguments, no gin. The trainer wires them together.
"""

import math

import tensorflow as tf
import tf_keras as keras


class WarmupCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Cosine decay from `peak` to `alpha * peak` over steps [0, decay_steps],
    with its first `warmup_steps` replaced by a linear ramp from 0.

    This is Model Garden's LinearWarmup(CosineDecay) as used for MobileNetV4:
    the cosine counts from step 0, so with decay_steps = training steps
    (Table 10: "cosine decay epochs" = "training epochs") the rate reaches
    alpha * peak exactly at the last step.
    """

    def __init__(self, peak, decay_steps, warmup_steps=0, alpha=0.0):
        super().__init__()
        if peak <= 0 or decay_steps <= 0 or warmup_steps < 0:
            raise ValueError(
                f"learning-rate schedule needs peak > 0, decay_steps > 0 and "
                f"warmup_steps >= 0; got peak={peak}, decay_steps={decay_steps}, "
                f"warmup_steps={warmup_steps}"
            )
        self.peak = float(peak)
        self.decay_steps = int(decay_steps)
        self.warmup_steps = int(warmup_steps)
        self.alpha = float(alpha)

    def _cosine(self, step):
        t = tf.minimum(step / self.decay_steps, 1.0)
        cosine = 0.5 * (1.0 + tf.cos(math.pi * t))
        return self.peak * ((1.0 - self.alpha) * cosine + self.alpha)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        if not self.warmup_steps:
            return self._cosine(step)
        ramp = self._cosine(float(self.warmup_steps)) * step / self.warmup_steps
        return tf.where(step < self.warmup_steps, ramp, self._cosine(step))

    def get_config(self):
        return dict(
            peak=self.peak,
            decay_steps=self.decay_steps,
            warmup_steps=self.warmup_steps,
            alpha=self.alpha,
        )


def no_decay_variables(model):
    """BatchNorm gamma/beta/statistics and every bias: kept out of weight decay."""
    excluded = []
    for layer in model.submodules:
        if isinstance(layer, keras.layers.BatchNormalization):
            excluded.extend(layer.weights)
    excluded.extend(
        v for v in model.trainable_variables if v.name.split("/")[-1].startswith("bias")
    )
    return excluded


def adamw(model, learning_rate, weight_decay, beta_1, beta_2, epsilon, clipnorm=None):
    """AdamW with decoupled weight decay (lr * wd * w, as Model Garden's
    `adamw_experimental`), BN and bias variables excluded."""
    opt = keras.optimizers.AdamW(
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        beta_1=beta_1,
        beta_2=beta_2,
        epsilon=epsilon,
        global_clipnorm=clipnorm,
    )
    opt.exclude_from_weight_decay(var_list=no_decay_variables(model))
    return opt


class EMA(tf.Module):
    """Exponential moving average of a model's weights, with weight swapping.

    Averages every model weight (trainable and BN statistics), so that the swapped
    model is self-consistent. With `dynamic=True` the decay ramps up as
    min(decay, (1 + n) / (10 + n)) like Model Garden and tf.train's EMA, so short
    runs are not dominated by the random initialisation.
    """

    def __init__(self, model, decay, dynamic=True):
        super().__init__(name="ema")
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1); got {decay}")
        self.decay = float(decay)
        self.dynamic = dynamic
        self._model_weights = list(model.weights)
        self.updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="ema_updates")
        self.averages = [
            tf.Variable(w.read_value(), trainable=False, name="ema/" + w.name.split(":")[0])
            for w in model.weights
        ]

    def _current_decay(self):
        if not self.dynamic:
            return tf.constant(self.decay)
        n = tf.cast(self.updates, tf.float32)
        return tf.minimum(self.decay, (1.0 + n) / (10.0 + n))

    def update(self):
        """Call in replica context after the optimizer step (or outside any strategy)."""
        ctx = tf.distribute.get_replica_context()
        if ctx is None:  # cross-replica context
            self._apply(tf.distribute.get_strategy())
        else:
            ctx.merge_call(self._apply)

    def _apply(self, strategy):
        decay = self._current_decay()

        def ema_fn(average, value):
            value = tf.cast(value, average.dtype)
            return average.assign(decay * average + (1.0 - decay) * value)

        for average, weight in zip(self.averages, self._model_weights):
            strategy.extended.update(average, ema_fn, args=(weight,))
        strategy.extended.update(self.updates, lambda u: u.assign_add(1))

    def swap(self):
        """Exchange model weights and averages (call twice to undo)."""
        for average, weight in zip(self.averages, self._model_weights):
            model_value = weight.read_value()
            weight.assign(tf.cast(average.read_value(), weight.dtype))
            average.assign(tf.cast(model_value, average.dtype))
