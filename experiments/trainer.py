"""The training loop: tf.distribute, checkpoints with auto-resume, EMA evaluation.

Public pieces (the distillation trainer and NAS bind to these):
  train(model_dir, data, ...)         gin-configurable entry point, returns metrics
  input_pipeline(dataset, ...)        gin-configurable ImageClassificationData factory
  mobilenetv4_model(num_classes, image_size, ...)   default model_fn
  categorical_crossentropy(label_smoothing)         default loss_fn factory
  make_strategy(name, tpu)            tf.distribute strategy from a flag value
  make_train_step(...)                one distributed optimisation step (tf.function)
  evaluate(...)                       top-1 / top-5 / loss on the eval split
  attach_build_record(model, record)  how a model_fn says what it built (NAS, custom models)

The loop itself (state, checkpoints, progress log, loop, run artifacts, run lock) lives in
experiments.loop; `train` is those pieces in order: check the arguments, lock MODEL_DIR (chief),
make the strategy, the data and the state, restore, run the loop, evaluate, write the artifacts.
"""

import dataclasses
import json
import math
import os
import time
from typing import Any, Optional

from absl import logging
import gin
import numpy as np
import tensorflow as tf
import tf_keras as keras

import mobilenetv4
from mobilenetv4 import build_record as build_record_lib
from mobilenetv4 import preprocessing
from mobilenetv4.cli import UserError
from experiments import data as data_lib
from experiments.loop import (  # noqa: F401  (Preempted and the pieces are public here too)
    Checkpoints,
    Preempted,
    ProgressLog,
    RunArtifacts,
    TrainingLoop,
    TrainingState,
    build_state,
    pipeline_errors,
    run_build_record,
    run_lock,
)

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
ATTENTION_TYPES = ("mobile_mqa", "mqa", "mhsa")
PADDINGS = ("same", "symmetric")
MIN_IMAGE_SIZE = 32
# TrainingLoop's cadence settings: train() arguments of the same names.
LOOP_SETTINGS = (
    "seed",
    "steps_per_loop",
    "log_every_steps",
    "checkpoint_every_steps",
    "eval_every_epochs",
)


# -------------------------------------------------------- argument checks
def _is_number(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _check(
    name,
    value,
    *,
    low=None,
    high=None,
    low_open=False,
    high_open=False,
    integer=False,
    optional=False,
):
    """UserError (one line, naming the gin binding) unless `value` is a finite
    number in the given interval; `optional` lets None through."""
    if value is None and optional:
        return
    if integer and not (isinstance(value, (int, np.integer)) and not isinstance(value, bool)):
        raise UserError(f"{name} must be an integer, got {value!r}")
    if not _is_number(value) or not math.isfinite(float(value)):
        raise UserError(f"{name} must be a finite number, got {value!r}")
    bad_low = low is not None and (value <= low if low_open else value < low)
    bad_high = high is not None and (value >= high if high_open else value > high)
    if bad_low or bad_high:
        lo = "" if low is None else ("(" if low_open else "[") + f"{low}"
        hi = "" if high is None else f"{high}" + (")" if high_open else "]")
        if low is not None and high is not None:
            interval = f"in {lo}, {hi}"
        elif low is not None:
            interval = f"{'>' if low_open else '>='} {low}"
        else:
            interval = f"{'<' if high_open else '<='} {high}"
        raise UserError(f"{name} must be {interval}, got {value!r}")


def _check_choice(name, value, choices):
    if value not in choices:
        raise UserError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")


# The bounds of the numeric `train.*` arguments: _check's keywords, by argument name.
_BOUNDS = {
    "batch_size": dict(low=1, integer=True),
    "epochs": dict(low=0, low_open=True),
    "peak_learning_rate": dict(low=0, low_open=True),
    "warmup_epochs": dict(low=0),
    "cosine_decay_epochs": dict(low=0, low_open=True, optional=True),
    "cosine_decay_alpha": dict(low=0, high=1),
    "weight_decay": dict(low=0),
    "beta_1": dict(low=0, high=1, high_open=True),
    "beta_2": dict(low=0, high=1, high_open=True),
    "epsilon": dict(low=0, low_open=True),
    "ema_decay": dict(low=0, high=1, low_open=True, high_open=True, optional=True),
    "gradient_clip_norm": dict(low=0, low_open=True, optional=True),
    "steps_per_loop": dict(low=1, integer=True),
    "checkpoint_every_steps": dict(low=1, integer=True),
    "keep_checkpoints": dict(low=1, integer=True),
    "eval_every_epochs": dict(low=1, integer=True, optional=True),
    "log_every_steps": dict(low=1, integer=True),
    "max_steps": dict(low=1, integer=True, optional=True),
    "seed": dict(low=0, integer=True),
}


@dataclasses.dataclass(frozen=True)
class TrainArgs:
    """The gin-bound `train.*` arguments other than what is trained: paper Table 10's recipe
    (epochs, warm-up and cosine decay in epochs, AdamW, EMA) and the run's settings. `train` makes
    one from its own arguments; `build_state` reads the recipe fields from it."""

    batch_size: int
    epochs: float
    peak_learning_rate: float
    warmup_epochs: float
    cosine_decay_epochs: Optional[float]
    cosine_decay_alpha: float
    weight_decay: float
    beta_1: float
    beta_2: float
    epsilon: float
    ema_decay: Optional[float]
    gradient_clip_norm: Optional[float]
    strategy: Any
    tpu: Optional[str]
    mixed_precision: Optional[str]
    steps_per_loop: int
    checkpoint_every_steps: int
    keep_checkpoints: int
    eval_every_epochs: Optional[int]
    log_every_steps: int
    max_steps: Optional[int]
    seed: int

    def check(self):
        """UserError (one line naming the gin binding) for any value out of range; run before
        anything is built."""
        for name, bounds in _BOUNDS.items():
            _check(f"train.{name}", getattr(self, name), **bounds)
        if self.mixed_precision not in ("auto", None, "float32", "bfloat16", "float16"):
            raise UserError(
                f"train.mixed_precision must be one of auto, float32, "
                f"bfloat16, float16; got {self.mixed_precision!r}"
            )
        if isinstance(self.strategy, str):
            _check_choice("train.strategy", self.strategy, STRATEGIES)
        decay = self.cosine_decay_epochs or self.epochs
        if self.warmup_epochs >= decay:
            raise UserError(
                f"train.warmup_epochs ({self.warmup_epochs}) must be shorter "
                f"than the cosine decay ({decay} epochs)"
            )


# ---------------------------------------------------------------- gin edges
@gin.configurable
def input_pipeline(
    dataset="sklearn_digits",
    eval_dataset=None,
    image_size=224,
    crop="inception",
    crop_area_range=(0.08, 1.0),
    flip=True,
    randaug_layers=0,
    randaug_magnitude=10.0,
    randaug_prob=None,
    randaug_exclude_ops=(),
    mix_prob=0.0,
    mixup_alpha=0.8,
    cutmix_alpha=1.0,
    mix_switch_prob=0.5,
    eval_crop_fraction=preprocessing.EVAL_CROP_FRACTION,
    shuffle_buffer=10_000,
    deterministic=False,
    cache=False,
    tfds_data_dir=None,
    tfds_manual_dir=None,
    tfds_download=False,
    num_classes=None,
    num_train_examples=None,
    num_eval_examples=None,
    label_offset=0,
    validation_fraction=0.0,
    validation_seed=0,
    validation_dataset=None,
):
    """Dataset spec strings (see experiments.data) plus Table 10 augmentation.

    `label_offset` is subtracted from every stored label (e.g. 1 for labels
    1..10); a spec's own `;label_offset=N` wins. Labels are checked against
    the classes as they stream. A validation split, held apart from both the
    training and the eval split (the NAS search's rewards come from it), is
    either `validation_fraction` of the training split (data.hold_out, by a
    hash of each example's key seeded with `validation_seed`; not trained on)
    or the spec `validation_dataset`.
    """
    _check("input_pipeline.image_size", image_size, low=MIN_IMAGE_SIZE, integer=True)
    _check_choice("input_pipeline.crop", crop, ("inception", "resize"))
    if len(tuple(crop_area_range)) != 2:
        raise UserError(
            f"input_pipeline.crop_area_range must be (low, high), got {crop_area_range!r}"
        )
    lo, hi = tuple(crop_area_range)
    _check("input_pipeline.crop_area_range low", lo, low=0, high=1, low_open=True)
    _check("input_pipeline.crop_area_range high", hi, low=lo, high=1)
    _check("input_pipeline.eval_crop_fraction", eval_crop_fraction, low=0, high=1, low_open=True)
    _check("input_pipeline.randaug_layers", randaug_layers, low=0, integer=True)
    _check("input_pipeline.randaug_magnitude", randaug_magnitude, low=0)
    _check("input_pipeline.randaug_prob", randaug_prob, low=0, high=1, optional=True)
    for name, value in (("mix_prob", mix_prob), ("mix_switch_prob", mix_switch_prob)):
        _check(f"input_pipeline.{name}", value, low=0, high=1)
    for name, value in (("mixup_alpha", mixup_alpha), ("cutmix_alpha", cutmix_alpha)):
        _check(f"input_pipeline.{name}", value, low=0)
    _check("input_pipeline.shuffle_buffer", shuffle_buffer, low=1, integer=True)
    _check("input_pipeline.num_classes", num_classes, low=1, integer=True, optional=True)
    _check(
        "input_pipeline.num_train_examples", num_train_examples, low=1, integer=True, optional=True
    )
    _check(
        "input_pipeline.num_eval_examples", num_eval_examples, low=1, integer=True, optional=True
    )
    _check("input_pipeline.label_offset", label_offset, integer=True)
    _check("input_pipeline.validation_fraction", validation_fraction, low=0, high=1, high_open=True)
    _check("input_pipeline.validation_seed", validation_seed, low=0, integer=True)
    kw = dict(
        tfds_data_dir=tfds_data_dir,
        tfds_manual_dir=tfds_manual_dir,
        tfds_download=tfds_download,
        num_classes=num_classes,
        label_offset=label_offset,
    )
    train_source = data_lib.make_source(dataset, "train", num_examples=num_train_examples, **kw)
    eval_spec = eval_dataset or data_lib.eval_split_of(dataset)
    eval_source = (
        data_lib.make_source(eval_spec, "eval", num_examples=num_eval_examples, **kw)
        if eval_spec
        else None
    )
    if validation_dataset and validation_fraction:
        raise UserError(
            "give input_pipeline.validation_fraction or input_pipeline.validation_dataset, not both"
        )
    validation_source = None
    if validation_dataset:
        validation_source = data_lib.make_source(validation_dataset, "train", **kw)
    elif validation_fraction:
        train_source, validation_source = data_lib.hold_out(
            train_source, validation_fraction, validation_seed
        )
    aug = data_lib.Augmentation(
        crop=crop,
        crop_area_range=tuple(crop_area_range),
        flip=flip,
        randaug_layers=randaug_layers,
        randaug_magnitude=randaug_magnitude,
        randaug_prob=randaug_prob,
        randaug_exclude_ops=tuple(randaug_exclude_ops),
        mix_prob=mix_prob,
        mixup_alpha=mixup_alpha,
        cutmix_alpha=cutmix_alpha,
        mix_switch_prob=mix_switch_prob,
    )
    return data_lib.ImageClassificationData(
        train_source,
        eval_source,
        image_size,
        aug,
        eval_crop_fraction,
        shuffle_buffer,
        deterministic,
        cache,
        validation_source=validation_source,
    )


def attach_build_record(model, record):
    """Sets `model.build_record` (a build_record.make(...) dict) without Keras
    tracking it (so checkpoints are unchanged). The trainer writes it, completed
    with the run's data, input size and EMA facts, to MODEL_DIR/build.json and
    into the final weights. Use it in any model_fn (NAS, custom models)."""
    object.__setattr__(model, "build_record", dict(record))
    return model


@gin.configurable(denylist=["check_only"])
def mobilenetv4_model(
    num_classes,
    image_size,
    name="conv_small",
    dropout=None,
    stochastic_depth_rate=0.0,
    l2=0.0,
    width_multiplier=None,
    bn_momentum=0.99,
    bn_epsilon=1e-5,
    attention_type="mobile_mqa",
    padding="same",
    check_only=False,
):
    """A MobileNetV4 classifier giving logits, with its build record attached.

    `l2` follows Model Garden: loss += l2 * sum(w^2) / 2 over conv/dense kernels.
    `stochastic_depth_rate` is the peak rate; the builder grows it linearly with
    block depth, attention blocks included. `attention_type` (hybrids) and
    `padding` ("same" | "symmetric") are create_model's. `check_only` validates
    the arguments (UserError) and builds nothing.
    """
    _check_choice("mobilenetv4_model.name", name, mobilenetv4.list_models())
    _check("mobilenetv4_model.dropout", dropout, low=0, high=1, high_open=True, optional=True)
    _check(
        "mobilenetv4_model.stochastic_depth_rate",
        stochastic_depth_rate,
        low=0,
        high=1,
        high_open=True,
    )
    _check("mobilenetv4_model.l2", l2, low=0)
    _check(
        "mobilenetv4_model.width_multiplier", width_multiplier, low=0, low_open=True, optional=True
    )
    _check("mobilenetv4_model.bn_momentum", bn_momentum, low=0, high=1, high_open=True)
    _check("mobilenetv4_model.bn_epsilon", bn_epsilon, low=0, low_open=True)
    _check_choice("mobilenetv4_model.attention_type", attention_type, ATTENTION_TYPES)
    _check_choice("mobilenetv4_model.padding", padding, PADDINGS)
    if check_only:
        return None
    regularizer = keras.regularizers.L2(l2 / 2.0) if l2 else None
    model = mobilenetv4.create_model(
        name,
        input_shape=(image_size, image_size, 3),
        classes=num_classes,
        dropout=dropout,
        stochastic_depth_rate=stochastic_depth_rate,
        width_multiplier=width_multiplier,
        bn_momentum=bn_momentum,
        bn_epsilon=bn_epsilon,
        kernel_regularizer=regularizer,
        attention_type=attention_type,
        padding=padding,
    )
    build = {
        "classes": int(num_classes),
        "width_multiplier": width_multiplier,
        "attention_type": attention_type,
        "padding": padding,
        "bn_epsilon": bn_epsilon,
        "bn_momentum": bn_momentum,
    }
    return attach_build_record(
        model, build_record_lib.make(name, build=build, input_size=[image_size, image_size])
    )


@gin.configurable
def categorical_crossentropy(label_smoothing=0.0):
    """Per-example CE from logits against dense (possibly soft) label vectors."""
    _check(
        "categorical_crossentropy.label_smoothing", label_smoothing, low=0, high=1, high_open=True
    )

    def loss_fn(labels, logits):
        return keras.losses.categorical_crossentropy(
            labels, logits, from_logits=True, label_smoothing=label_smoothing
        )

    return loss_fn


# ------------------------------------------------------------ distribution
def make_strategy(name="default", tpu=None):
    """'default' | 'mirrored' | 'multi_worker' | 'tpu' -> tf.distribute strategy.

    'mirrored' uses every local GPU, or every (logical) CPU device if no GPU.
    'multi_worker' reads the cluster from the TF_CONFIG environment variable.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise UserError(f"unknown strategy '{name}'; choose default, mirrored, multi_worker or tpu")


def _is_tpu(strategy):
    return isinstance(strategy, tf.distribute.TPUStrategy)


def _chief_of(task_type, task_id, cluster):
    if not task_type or task_type == "chief":
        return True
    return task_type == "worker" and int(task_id or 0) == 0 and "chief" not in cluster


def is_chief_from_tf_config(strategy_name):
    """Whether this process is the chief of a 'multi_worker' run, from TF_CONFIG
    (before the strategy exists, so the run directory can be locked first)."""
    if strategy_name != "multi_worker":
        return True
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return True
    try:
        config = json.loads(raw)
        task = config.get("task", {})
        return _chief_of(task.get("type"), task.get("index"), config.get("cluster", {}))
    except (ValueError, AttributeError, TypeError):
        raise UserError(
            "TF_CONFIG is not valid JSON of the form {\"cluster\": "
            "{\"worker\": [\"host:port\", ...]}, \"task\": {\"type\": "
            "\"worker\", \"index\": 0}}"
        ) from None


def _is_chief(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    return _chief_of(resolver.task_type, resolver.task_id, resolver.cluster_spec().as_dict())


def _mixed_precision_policy(mixed_precision, strategy):
    if mixed_precision == "auto":
        if _is_tpu(strategy):
            return "mixed_bfloat16"
        return "mixed_float16" if tf.config.list_logical_devices("GPU") else None
    if mixed_precision in (None, "float32"):
        return None
    if mixed_precision in ("bfloat16", "float16"):
        return "mixed_" + mixed_precision
    raise UserError(
        f"unknown mixed_precision '{mixed_precision}'; choose auto, float32, bfloat16 or float16"
    )


# ------------------------------------------------------------------- steps
def make_train_step(model, optimizer, loss_fn, strategy, global_batch, ema=None, metrics=None):
    """A tf.function running `num_steps` optimisation steps from a distributed
    iterator. The loss is summed per example and divided by the global batch,
    so any replica count gives the same gradient."""
    loss_scaled = isinstance(optimizer, keras.mixed_precision.LossScaleOptimizer)

    def step_fn(images, labels):
        with tf.GradientTape() as tape:
            logits = tf.cast(model(images, training=True), tf.float32)
            per_example = loss_fn(labels, logits)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            scaled = optimizer.get_scaled_loss(loss) if loss_scaled else loss
        grads = tape.gradient(scaled, model.trainable_variables)
        if loss_scaled:
            grads = optimizer.get_unscaled_gradients(grads)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        if ema is not None:
            ema.update()
        if metrics is not None:
            metrics["loss"].update_state(per_example)
            metrics["accuracy"].update_state(tf.argmax(labels, -1), tf.argmax(logits, -1))
        return loss

    @tf.function
    def train_steps(iterator, num_steps):
        loss = tf.constant(0.0)
        for _ in tf.range(num_steps):
            per_replica = strategy.run(step_fn, args=next(iterator))
            loss = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
        return loss

    return train_steps


def make_eval_step(model, loss_fn, strategy):
    """Returns per-batch sums: (weighted loss, top-1 hits, top-5 hits, weight)."""

    def step_fn(images, labels, weights):
        logits = tf.cast(model(images, training=False), tf.float32)
        target = tf.argmax(labels, -1)
        top1 = tf.cast(tf.equal(tf.argmax(logits, -1), target), tf.float32)
        k = min(5, logits.shape[-1])
        top5 = tf.cast(tf.nn.in_top_k(target, logits, k), tf.float32)
        loss = loss_fn(labels, logits)
        return tf.stack(
            [
                tf.reduce_sum(loss * weights),
                tf.reduce_sum(top1 * weights),
                tf.reduce_sum(top5 * weights),
                tf.reduce_sum(weights),
            ]
        )

    @tf.function
    def eval_step(batch):
        sums = strategy.run(step_fn, args=batch)
        return strategy.reduce(tf.distribute.ReduceOp.SUM, sums, axis=None)

    return eval_step


def evaluate(model, data, loss_fn, strategy, global_batch, ema=None):
    """Top-1/top-5 accuracy and loss on the eval split (EMA weights if given)."""
    replicas = strategy.num_replicas_in_sync
    per_replica = global_batch // replicas
    num_steps = math.ceil(data.num_eval_examples / global_batch)
    dataset = strategy.distribute_datasets_from_function(
        lambda ctx: data.eval_dataset(ctx, per_replica, num_steps)
    )
    eval_step = make_eval_step(model, loss_fn, strategy)
    if ema is not None:
        ema.swap()
    try:
        totals = tf.zeros([4])
        with pipeline_errors(data):
            for batch in dataset:
                totals += eval_step(batch)
    finally:
        if ema is not None:
            ema.swap()
    loss, top1, top5, n = totals.numpy().tolist()
    return {
        "eval_loss": loss / n,
        "eval_top1": top1 / n,
        "eval_top5": top5 / n,
        "eval_examples": int(n),
        "eval_weights": "ema" if ema else "model",
    }


# -------------------------------------------------------------------- train
@gin.configurable(denylist=["model_dir"])
def train(
    model_dir,
    data=gin.REQUIRED,
    model_fn=mobilenetv4_model,
    loss_fn=None,
    batch_size=gin.REQUIRED,
    epochs=gin.REQUIRED,
    peak_learning_rate=gin.REQUIRED,
    warmup_epochs=0,
    cosine_decay_epochs=None,
    cosine_decay_alpha=0.0,
    weight_decay=0.0,
    beta_1=0.9,
    beta_2=0.999,
    epsilon=1e-7,
    ema_decay=None,
    gradient_clip_norm=None,
    strategy="default",
    tpu=None,
    mixed_precision="auto",
    steps_per_loop=1,
    checkpoint_every_steps=1000,
    keep_checkpoints=3,
    eval_every_epochs=None,
    log_every_steps=100,
    max_steps=None,
    seed=0,
):
    """Trains `model_fn(num_classes, image_size)` on `data` and returns metrics.

    Args mirror paper Table 10 (epochs, warm-up and cosine decay in epochs;
    AdamW; EMA); `data` is a `experiments.data.TrainingData` (e.g. an
    ImageClassificationData) or a callable returning one; `loss_fn(labels,
    logits)` gives per-example losses (default: categorical_crossentropy() as
    bound in gin). Resumes from the newest checkpoint in model_dir/checkpoints.
    `max_steps` stops early (smoke tests) without changing the schedule.

    Arguments are checked first (UserError, nothing built or written); the
    chief then holds fileio.RunLock(model_dir) for the whole run, so a second
    job in the same model_dir is refused (UserError).
    """
    given = locals()  # first statement: exactly train's arguments
    started = time.time()
    args = TrainArgs(**{f.name: given[f.name] for f in dataclasses.fields(TrainArgs)})
    args.check()
    if model_fn is mobilenetv4_model:
        mobilenetv4_model(num_classes=1, image_size=MIN_IMAGE_SIZE, check_only=True)
    model_dir = os.fspath(model_dir)
    chief = is_chief_from_tf_config(strategy) if isinstance(strategy, str) else _is_chief(strategy)
    with run_lock(model_dir, chief):
        return _train_locked(model_dir, data, model_fn, loss_fn, args, started)


def _train_locked(model_dir, data, model_fn, loss_fn, args, started):
    strategy = args.strategy
    strategy = make_strategy(strategy, args.tpu) if isinstance(strategy, str) else strategy
    chief = _is_chief(strategy)
    policy = _mixed_precision_policy(args.mixed_precision, strategy)
    keras.mixed_precision.set_global_policy(policy or "float32")
    # Dropout RNG state lives in variables, so checkpoints carry it.
    keras.backend.experimental.enable_tf_random_generator()
    keras.utils.set_random_seed(args.seed)

    data = data() if callable(data) else data
    loss_fn = loss_fn or categorical_crossentropy()
    replicas = strategy.num_replicas_in_sync
    if args.batch_size % replicas:
        raise UserError(
            f"train.batch_size {args.batch_size} is not divisible by the "
            f"{replicas} replicas of the '{type(strategy).__name__}'"
        )
    steps_per_epoch = data.steps_per_epoch(args.batch_size)
    total_steps = int(args.epochs * steps_per_epoch)
    if total_steps < 1:
        raise UserError(
            f"train.epochs {args.epochs} x {steps_per_epoch} steps per "
            "epoch is less than one step; raise epochs"
        )
    last_step = min(total_steps, args.max_steps) if args.max_steps else total_steps

    state = build_state(
        model_fn, data, strategy, args, steps_per_epoch=steps_per_epoch, policy=policy
    )
    checkpoints = Checkpoints(state, model_dir, strategy, chief, keep=args.keep_checkpoints)
    artifacts = RunArtifacts(
        model_dir, chief, run_build_record(state.model, data, state.ema is not None)
    )
    try:
        artifacts.check_resume(checkpoints)
        restored = checkpoints.restore(state.optimizer.iterations)
        step = int(state.optimizer.iterations.numpy())
        artifacts.write_start()
        logging.info(
            "%s: %s parameters, %d classes, %dpx; %d steps (%s epochs x "
            "%d), global batch %d on %d replica(s); checkpoints in %s",
            state.model.name,
            f"{state.model.count_params():,}",
            data.num_classes,
            data.image_size,
            last_step,
            args.epochs,
            steps_per_epoch,
            args.batch_size,
            replicas,
            checkpoints.write_directory,
        )
        if restored:
            logging.info("resumed from %s at step %d", restored, step)

        def evaluate_now():
            return evaluate(state.model, data, loss_fn, strategy, args.batch_size, state.ema)

        progress = ProgressLog(
            model_dir,
            chief,
            state,
            step,
            batch_size=args.batch_size,
            steps_per_epoch=steps_per_epoch,
            last_step=last_step,
        )
        loop = TrainingLoop(
            data=data,
            strategy=strategy,
            train_steps=make_train_step(
                state.model,
                state.optimizer,
                loss_fn,
                strategy,
                args.batch_size,
                state.ema,
                state.metrics,
            ),
            checkpoints=checkpoints,
            progress=progress,
            evaluate_fn=evaluate_now,
            global_batch=args.batch_size,
            steps_per_epoch=steps_per_epoch,
            last_step=last_step,
            **{name: getattr(args, name) for name in LOOP_SETTINGS},
        )
        step = loop.run(step)
        results = dict(loop.results)
        if data.num_eval_examples:
            ev = evaluate_now()
            results.update(ev)
            progress.eval(step, ev, final=True)
        progress.flush()
        weights, raw_weights, fingerprint = artifacts.write_weights(state.model, state.ema)
        results.update(
            step=step,
            epochs=step / steps_per_epoch,
            wall_time_s=time.time() - started,
            checkpoint=checkpoints.latest,
            replicas=replicas,
            global_batch=args.batch_size,
            chief=chief,
            weights_sha256=fingerprint,
        )
        if weights:
            results["weights"] = weights
        if raw_weights:
            results["raw_weights"] = raw_weights
        if artifacts.record:
            results["build_record"] = os.path.join(model_dir, build_record_lib.RUN_FILE)
        artifacts.write_end(results)
        return results
    finally:
        checkpoints.close()
