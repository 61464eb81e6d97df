"""The training loop: tf.distribute, checkpoints with auto-resume, EMA evaluation.

Public pieces (the distillation trainer and NAS bind to these):
  train(model_dir, data, ...)         gin-configurable entry point, returns metrics
  input_pipeline(dataset, ...)        gin-configurable ImageClassificationData factory
  mobilenetv4_model(num_classes, image_size, ...)   default model_fn
  categorical_crossentropy(label_smoothing)         default loss_fn factory
  make_strategy(name, tpu)            tf.distribute strategy from a flag value
  make_train_step(...)                one distributed optimisation step (tf.function)
  evaluate(...)                       top-1 / top-5 / loss on the eval split
  TrainingState, build_state(...)     model + optimizer + schedule + EMA for a run
  Checkpoints                         save / restore (chief writes MODEL_DIR/checkpoints)
  ProgressLog                         the progress line and TensorBoard scalars
  TrainingLoop                        steps with log / checkpoint / eval steps between them
  RunArtifacts                        build.json, final weights, metrics.json, operative config
  attach_build_record(model, record)  how a model_fn says what it built (NAS, custom models)

`train` is these pieces in order: validate arguments, lock MODEL_DIR (chief), make the strategy,
the data and the state, restore, run the loop, evaluate, write the artifacts.
"""
import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import signal
import tempfile
import time
from typing import Any, Callable, Optional

from absl import logging
import gin
import numpy as np
import tensorflow as tf
import tf_keras as keras

import mobilenetv4
from mobilenetv4 import build_record as build_record_lib
from mobilenetv4 import fileio
from mobilenetv4 import preprocessing
from mobilenetv4.cli import UserError
from experiments import data as data_lib
from experiments import optim

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
ATTENTION_TYPES = ("mobile_mqa", "mqa", "mhsa")
PADDINGS = ("same", "symmetric")
MIN_IMAGE_SIZE = 32


class Preempted(Exception):
  """Raised after saving a checkpoint when SIGTERM arrived."""


# -------------------------------------------------------- argument checks
def _is_number(value):
  return isinstance(value, (int, float, np.integer, np.floating)) and \
      not isinstance(value, bool)


def _check(name, value, *, low=None, high=None, low_open=False,
           high_open=False, integer=False, optional=False):
  """UserError (one line, naming the gin binding) unless `value` is a finite
  number in the given interval; `optional` lets None through."""
  if value is None and optional:
    return
  if integer and not (isinstance(value, (int, np.integer))
                      and not isinstance(value, bool)):
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
    raise UserError(f"{name} must be one of {', '.join(map(str, choices))}; "
                    f"got {value!r}")


def check_train_args(batch_size, epochs, peak_learning_rate, warmup_epochs,
                     cosine_decay_epochs, cosine_decay_alpha, weight_decay,
                     beta_1, beta_2, epsilon, ema_decay, gradient_clip_norm,
                     steps_per_loop, checkpoint_every_steps, keep_checkpoints,
                     eval_every_epochs, log_every_steps, max_steps, seed,
                     mixed_precision, strategy):
  """The gin-bound `train.*` arguments, checked before anything is built."""
  _check("train.batch_size", batch_size, low=1, integer=True)
  _check("train.epochs", epochs, low=0, low_open=True)
  _check("train.peak_learning_rate", peak_learning_rate, low=0, low_open=True)
  _check("train.warmup_epochs", warmup_epochs, low=0)
  _check("train.cosine_decay_epochs", cosine_decay_epochs, low=0,
         low_open=True, optional=True)
  _check("train.cosine_decay_alpha", cosine_decay_alpha, low=0, high=1)
  _check("train.weight_decay", weight_decay, low=0)
  _check("train.beta_1", beta_1, low=0, high=1, high_open=True)
  _check("train.beta_2", beta_2, low=0, high=1, high_open=True)
  _check("train.epsilon", epsilon, low=0, low_open=True)
  _check("train.ema_decay", ema_decay, low=0, high=1, low_open=True,
         high_open=True, optional=True)
  _check("train.gradient_clip_norm", gradient_clip_norm, low=0, low_open=True,
         optional=True)
  _check("train.steps_per_loop", steps_per_loop, low=1, integer=True)
  _check("train.checkpoint_every_steps", checkpoint_every_steps, low=1,
         integer=True)
  _check("train.keep_checkpoints", keep_checkpoints, low=1, integer=True)
  _check("train.eval_every_epochs", eval_every_epochs, low=1, integer=True,
         optional=True)
  _check("train.log_every_steps", log_every_steps, low=1, integer=True)
  _check("train.max_steps", max_steps, low=1, integer=True, optional=True)
  _check("train.seed", seed, low=0, integer=True)
  if mixed_precision not in ("auto", None, "float32", "bfloat16", "float16"):
    raise UserError(f"train.mixed_precision must be one of auto, float32, "
                    f"bfloat16, float16; got {mixed_precision!r}")
  if isinstance(strategy, str):
    _check_choice("train.strategy", strategy, STRATEGIES)
  if warmup_epochs >= (cosine_decay_epochs or epochs):
    raise UserError(f"train.warmup_epochs ({warmup_epochs}) must be shorter "
                    f"than the cosine decay ({cosine_decay_epochs or epochs} "
                    "epochs)")


# ---------------------------------------------------------------- gin edges
@gin.configurable
def input_pipeline(dataset="sklearn_digits", eval_dataset=None, image_size=224,
                   crop="inception", crop_area_range=(0.08, 1.0), flip=True,
                   randaug_layers=0, randaug_magnitude=10.0, randaug_prob=None,
                   randaug_exclude_ops=(), mix_prob=0.0, mixup_alpha=0.8,
                   cutmix_alpha=1.0, mix_switch_prob=0.5,
                   eval_crop_fraction=preprocessing.EVAL_CROP_FRACTION,
                   shuffle_buffer=10_000, deterministic=False, cache=False,
                   tfds_data_dir=None, tfds_manual_dir=None,
                   tfds_download=False, num_classes=None,
                   num_train_examples=None, num_eval_examples=None,
                   label_offset=0):
  """Dataset spec strings (see experiments.data) plus Table 10 augmentation.

  `label_offset` is subtracted from every stored label (e.g. 1 for labels
  1..10); a spec's own `;label_offset=N` wins. Labels are checked against
  the classes as they stream.
  """
  _check("input_pipeline.image_size", image_size, low=MIN_IMAGE_SIZE,
         integer=True)
  _check_choice("input_pipeline.crop", crop, ("inception", "resize"))
  if len(tuple(crop_area_range)) != 2:
    raise UserError("input_pipeline.crop_area_range must be (low, high), got "
                    f"{crop_area_range!r}")
  lo, hi = tuple(crop_area_range)
  _check("input_pipeline.crop_area_range low", lo, low=0, high=1,
         low_open=True)
  _check("input_pipeline.crop_area_range high", hi, low=lo, high=1)
  _check("input_pipeline.eval_crop_fraction", eval_crop_fraction, low=0,
         high=1, low_open=True)
  _check("input_pipeline.randaug_layers", randaug_layers, low=0, integer=True)
  _check("input_pipeline.randaug_magnitude", randaug_magnitude, low=0)
  _check("input_pipeline.randaug_prob", randaug_prob, low=0, high=1,
         optional=True)
  for name, value in (("mix_prob", mix_prob), ("mix_switch_prob",
                                               mix_switch_prob)):
    _check(f"input_pipeline.{name}", value, low=0, high=1)
  for name, value in (("mixup_alpha", mixup_alpha),
                      ("cutmix_alpha", cutmix_alpha)):
    _check(f"input_pipeline.{name}", value, low=0)
  _check("input_pipeline.shuffle_buffer", shuffle_buffer, low=1, integer=True)
  _check("input_pipeline.num_classes", num_classes, low=1, integer=True,
         optional=True)
  _check("input_pipeline.num_train_examples", num_train_examples, low=1,
         integer=True, optional=True)
  _check("input_pipeline.num_eval_examples", num_eval_examples, low=1,
         integer=True, optional=True)
  _check("input_pipeline.label_offset", label_offset, integer=True)
  kw = dict(tfds_data_dir=tfds_data_dir, tfds_manual_dir=tfds_manual_dir,
            tfds_download=tfds_download, num_classes=num_classes,
            label_offset=label_offset)
  train_source = data_lib.make_source(dataset, "train",
                                      num_examples=num_train_examples, **kw)
  eval_spec = eval_dataset or data_lib.eval_split_of(dataset)
  eval_source = (data_lib.make_source(eval_spec, "eval",
                                      num_examples=num_eval_examples, **kw)
                 if eval_spec else None)
  aug = data_lib.Augmentation(
      crop=crop, crop_area_range=tuple(crop_area_range), flip=flip,
      randaug_layers=randaug_layers, randaug_magnitude=randaug_magnitude,
      randaug_prob=randaug_prob, randaug_exclude_ops=tuple(randaug_exclude_ops),
      mix_prob=mix_prob, mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha,
      mix_switch_prob=mix_switch_prob)
  return data_lib.ImageClassificationData(
      train_source, eval_source, image_size, aug, eval_crop_fraction,
      shuffle_buffer, deterministic, cache)


def attach_build_record(model, record):
  """Sets `model.build_record` (a build_record.make(...) dict) without Keras
  tracking it (so checkpoints are unchanged). The trainer writes it, completed
  with the run's data, input size and EMA facts, to MODEL_DIR/build.json and
  into the final weights. Use it in any model_fn (NAS, custom models)."""
  object.__setattr__(model, "build_record", dict(record))
  return model


@gin.configurable(denylist=["check_only"])
def mobilenetv4_model(num_classes, image_size, name="conv_small", dropout=None,
                      stochastic_depth_rate=0.0, l2=0.0, width_multiplier=None,
                      bn_momentum=0.99, bn_epsilon=1e-5,
                      attention_type="mobile_mqa", padding="same",
                      check_only=False):
  """A MobileNetV4 classifier giving logits, with its build record attached.

  `l2` follows Model Garden: loss += l2 * sum(w^2) / 2 over conv/dense kernels.
  `stochastic_depth_rate` is the peak rate; the builder grows it linearly with
  block depth, attention blocks included. `attention_type` (hybrids) and
  `padding` ("same" | "symmetric") are create_model's. `check_only` validates
  the arguments (UserError) and builds nothing.
  """
  _check_choice("mobilenetv4_model.name", name, mobilenetv4.list_models())
  _check("mobilenetv4_model.dropout", dropout, low=0, high=1, high_open=True,
         optional=True)
  _check("mobilenetv4_model.stochastic_depth_rate", stochastic_depth_rate,
         low=0, high=1, high_open=True)
  _check("mobilenetv4_model.l2", l2, low=0)
  _check("mobilenetv4_model.width_multiplier", width_multiplier, low=0,
         low_open=True, optional=True)
  _check("mobilenetv4_model.bn_momentum", bn_momentum, low=0, high=1,
         high_open=True)
  _check("mobilenetv4_model.bn_epsilon", bn_epsilon, low=0, low_open=True)
  _check_choice("mobilenetv4_model.attention_type", attention_type,
                ATTENTION_TYPES)
  _check_choice("mobilenetv4_model.padding", padding, PADDINGS)
  if check_only:
    return None
  regularizer = keras.regularizers.L2(l2 / 2.0) if l2 else None
  model = mobilenetv4.create_model(
      name, input_shape=(image_size, image_size, 3), classes=num_classes,
      dropout=dropout, stochastic_depth_rate=stochastic_depth_rate,
      width_multiplier=width_multiplier, bn_momentum=bn_momentum,
      bn_epsilon=bn_epsilon, kernel_regularizer=regularizer,
      attention_type=attention_type, padding=padding)
  build = {"classes": int(num_classes), "width_multiplier": width_multiplier,
           "attention_type": attention_type, "padding": padding,
           "bn_epsilon": bn_epsilon, "bn_momentum": bn_momentum}
  return attach_build_record(model, build_record_lib.make(
      name, build=build, input_size=[image_size, image_size]))


@gin.configurable
def categorical_crossentropy(label_smoothing=0.0):
  """Per-example CE from logits against dense (possibly soft) label vectors."""
  _check("categorical_crossentropy.label_smoothing", label_smoothing, low=0,
         high=1, high_open=True)
  def loss_fn(labels, logits):
    return keras.losses.categorical_crossentropy(
        labels, logits, from_logits=True, label_smoothing=label_smoothing)
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
    devices = tf.config.list_logical_devices("GPU") or \
        tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([d.name for d in devices])
  if name == "multi_worker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  if name == "tpu":
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
  raise UserError(f"unknown strategy '{name}'; choose default, mirrored, "
                  "multi_worker or tpu")


def _is_tpu(strategy):
  return isinstance(strategy, tf.distribute.TPUStrategy)


def _chief_of(task_type, task_id, cluster):
  if not task_type or task_type == "chief":
    return True
  return task_type == "worker" and int(task_id or 0) == 0 and \
      "chief" not in cluster


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
    return _chief_of(task.get("type"), task.get("index"),
                     config.get("cluster", {}))
  except (ValueError, AttributeError, TypeError):
    raise UserError("TF_CONFIG is not valid JSON of the form {\"cluster\": "
                    "{\"worker\": [\"host:port\", ...]}, \"task\": {\"type\": "
                    "\"worker\", \"index\": 0}}") from None


def _is_chief(strategy):
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not getattr(resolver, "task_type", None):
    return True
  return _chief_of(resolver.task_type, resolver.task_id,
                   resolver.cluster_spec().as_dict())


def _random_generator_states(model):
  """State variables of the layers' tf.random.Generators (Dropout, StochasticDepth).

  tf_keras creates them lazily and does not track them for checkpoints; made
  now and checkpointed, a resumed run draws the same dropout and drop-path
  masks as an uninterrupted one.
  """
  states = []
  for layer in model.submodules:
    rng = getattr(layer, "_random_generator", None)
    if hasattr(rng, "_maybe_init"):  # tf_keras' backend.RandomGenerator
      rng._maybe_init()  # pylint: disable=protected-access
      generator = getattr(rng, "_generator", None)
      if generator is not None:
        states.append(generator.state)
  return states


def _mixed_precision_policy(mixed_precision, strategy):
  if mixed_precision == "auto":
    if _is_tpu(strategy):
      return "mixed_bfloat16"
    return "mixed_float16" if tf.config.list_logical_devices("GPU") else None
  if mixed_precision in (None, "float32"):
    return None
  if mixed_precision in ("bfloat16", "float16"):
    return "mixed_" + mixed_precision
  raise UserError(f"unknown mixed_precision '{mixed_precision}'; choose auto, "
                  "float32, bfloat16 or float16")


# ------------------------------------------------------------------- steps
def make_train_step(model, optimizer, loss_fn, strategy, global_batch,
                    ema=None, metrics=None):
  """A tf.function running `num_steps` optimisation steps from a distributed
  iterator. The loss is summed per example and divided by the global batch,
  so any replica count gives the same gradient."""
  loss_scaled = isinstance(optimizer, keras.mixed_precision.LossScaleOptimizer)

  def step_fn(images, labels):
    with tf.GradientTape() as tape:
      logits = tf.cast(model(images, training=True), tf.float32)
      per_example = loss_fn(labels, logits)
      loss = tf.nn.compute_average_loss(per_example,
                                        global_batch_size=global_batch)
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
      metrics["accuracy"].update_state(
          tf.argmax(labels, -1), tf.argmax(logits, -1))
    return loss

  @tf.function
  def train_steps(iterator, num_steps):
    loss = tf.constant(0.0)
    for _ in tf.range(num_steps):
      per_replica = strategy.run(step_fn, args=next(iterator))
      loss = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica,
                             axis=None)
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
    return tf.stack([tf.reduce_sum(loss * weights), tf.reduce_sum(top1 * weights),
                     tf.reduce_sum(top5 * weights), tf.reduce_sum(weights)])

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
      lambda ctx: data.eval_dataset(ctx, per_replica, num_steps))
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
  return {"eval_loss": loss / n, "eval_top1": top1 / n, "eval_top5": top5 / n,
          "eval_examples": int(n), "eval_weights": "ema" if ema else "model"}


# ------------------------------------------------------------ loop pieces
class _SigtermFlag:
  """Turns SIGTERM (preemption notice) into a flag checked between steps."""

  def __init__(self):
    self.raised = False
    self._previous = None

  def __enter__(self):
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread: leave signals alone
      self._previous = None
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.raised = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def _essential(message):
  """The informative part of a TF runtime error (assertion text or cause)."""
  found = re.search(r"assertion failed: (.*)", message)
  if found:
    return found.group(1).replace("] [", " ").strip(" []")
  lines = [l.strip() for l in message.splitlines() if l.strip()]
  useful = [l for l in lines if not l.startswith(
      ("[[", "Detected at node", "Graph execution error", "<stack traces"))]
  return data_lib._short((useful or lines or ["unknown error"])[0])  # pylint: disable=protected-access


def _record_files(data):
  files = []
  for name in ("train_source", "eval_source"):
    files.extend(getattr(getattr(data, name, None), "files", ()) or ())
  return files


class pipeline_errors:  # pylint: disable=invalid-name
  """Turns an input-pipeline failure inside the block into a one-line
  DataError: a bad image or label names its file; a corrupt or truncated
  TFRecord is located by re-reading the data's record files."""

  def __init__(self, data):
    self.data = data

  def __enter__(self):
    return self

  def __exit__(self, exc_type, exc, tb):
    if exc_type is not None and issubclass(exc_type, tf.errors.DataLossError):
      found = data_lib.find_corrupt_file(_record_files(self.data))
      if found:
        raise data_lib.DataError(f"TFRecord file {found[0]} is corrupt or "
                                 f"truncated ({found[1]}); re-create or remove "
                                 "it") from None
      raise data_lib.DataError("input pipeline failed: corrupt input data ("
                               f"{_essential(exc.message)})") from None
    if exc_type is not None and issubclass(exc_type,
                                           tf.errors.InvalidArgumentError):
      raise data_lib.DataError(
          "input pipeline failed: " + _essential(exc.message)) from None
    return False


def _format_eta(seconds):
  seconds = int(max(seconds, 0))
  return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _is_remote(path):
  return "://" in os.fspath(path)


def write_file(path, write):
  """Calls write(tmp_path) and moves the result onto `path` only when complete
  (fileio.atomic_path; on a remote file system, a local temporary file is
  copied, and the object store publishes it whole)."""
  if not _is_remote(path):
    with fileio.atomic_path(path) as tmp:
      write(tmp)
    return
  local = tempfile.mkdtemp(prefix="mnv4_upload_")
  try:
    tmp = os.path.join(local, os.path.basename(path))
    write(tmp)
    tf.io.gfile.copy(tmp, path, overwrite=True)
  finally:
    shutil.rmtree(local, ignore_errors=True)


def _write_text(path, text):
  def write(tmp):
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(text)
  write_file(path, write)


@dataclasses.dataclass
class TrainingState:
  """Everything a run trains and checkpoints (made under the strategy scope)."""
  model: Any
  optimizer: Any
  schedule: Any
  ema: Optional[optim.EMA]
  metrics: dict
  rng_states: list


def build_state(model_fn, data, strategy, *, steps_per_epoch, epochs,
                peak_learning_rate, warmup_epochs=0, cosine_decay_epochs=None,
                cosine_decay_alpha=0.0, weight_decay=0.0, beta_1=0.9,
                beta_2=0.999, epsilon=1e-7, ema_decay=None,
                gradient_clip_norm=None, policy=None):
  """Model, schedule, AdamW (loss-scaled under float16), EMA and train
  metrics, built under `strategy.scope()`."""
  with strategy.scope():
    model = model_fn(num_classes=data.num_classes, image_size=data.image_size)
    schedule = optim.WarmupCosineDecay(
        peak_learning_rate,
        decay_steps=max(1, round((cosine_decay_epochs or epochs)
                                 * steps_per_epoch)),  # from step 0
        warmup_steps=round(warmup_epochs * steps_per_epoch),
        alpha=cosine_decay_alpha)
    optimizer = optim.adamw(model, schedule, weight_decay, beta_1, beta_2,
                            epsilon, clipnorm=gradient_clip_norm)
    if policy == "mixed_float16":
      optimizer = keras.mixed_precision.LossScaleOptimizer(optimizer)
    optimizer.build(model.trainable_variables)
    ema = optim.EMA(model, ema_decay) if ema_decay else None
    rng_states = _random_generator_states(model)
    metrics = {"loss": keras.metrics.Mean(),
               "accuracy": keras.metrics.Accuracy()}
  return TrainingState(model, optimizer, schedule, ema, metrics, rng_states)


class Checkpoints:
  """tf.train.Checkpoint(model=, optimizer=, rng=[generator states], ema=EMA)
  saved every few steps. The chief writes MODEL_DIR/checkpoints; every worker
  restores from there (a shared file system, e.g. gs://), and the other
  workers save to a private temporary directory (their saves are collective
  operations, so all workers must save) that is removed at the end."""

  def __init__(self, state, model_dir, strategy, chief, keep=3):
    self.directory = os.path.join(model_dir, "checkpoints")
    self.chief = chief
    self._temp = None if chief else tempfile.mkdtemp(prefix="worker_ckpt_")
    self.write_directory = self.directory if chief else self._temp
    with strategy.scope():
      self.checkpoint = tf.train.Checkpoint(
          model=state.model, optimizer=state.optimizer, rng=state.rng_states,
          **({"ema": state.ema} if state.ema is not None else {}))
      self.manager = tf.train.CheckpointManager(
          self.checkpoint, self.write_directory, max_to_keep=keep)
    self._saved_step = -1

  def restore(self, step_variable):
    """Restores the newest checkpoint of MODEL_DIR/checkpoints; returns its
    path or None (fresh run)."""
    latest = tf.train.latest_checkpoint(self.directory)
    if latest:
      self.checkpoint.restore(latest)
      self._saved_step = int(step_variable.numpy())
    return latest

  def save(self, step):
    """Saves at `step` unless that step is saved already."""
    if self._saved_step != step:
      self.manager.save(checkpoint_number=step)
      self._saved_step = step

  @property
  def latest(self):
    return tf.train.latest_checkpoint(self.directory) if self.chief else \
        self.manager.latest_checkpoint

  def close(self):
    if self._temp:
      shutil.rmtree(self._temp, ignore_errors=True)


class ProgressLog:
  """The progress line every log_every_steps and the TensorBoard scalars
  (MODEL_DIR/train and MODEL_DIR/eval, chief only)."""

  def __init__(self, model_dir, chief, *, batch_size, steps_per_epoch,
               last_step, schedule, metrics, step):
    make = (lambda d: tf.summary.create_file_writer(os.path.join(model_dir, d))) \
        if chief else (lambda d: tf.summary.create_noop_writer())
    self.writer, self.eval_writer = make("train"), make("eval")
    self.batch_size = batch_size
    self.steps_per_epoch = steps_per_epoch
    self.last_step = last_step
    self.schedule = schedule
    self.metrics = metrics
    self._window = (time.time(), step)

  def train(self, step):
    """Logs and resets the train metrics; returns them."""
    now = time.time()
    start, start_step = self._window
    rate = (step - start_step) * self.batch_size / max(now - start, 1e-9)
    lr = float(self.schedule(step))
    loss = float(self.metrics["loss"].result())
    acc = float(self.metrics["accuracy"].result())
    eta = (self.last_step - step) * self.batch_size / max(rate, 1e-9)
    logging.info("step %d/%d  epoch %.2f  loss %.4f  train_acc %.3f  "
                 "lr %.3g  %.1f img/s  ETA %s", step, self.last_step,
                 step / self.steps_per_epoch, loss, acc, lr, rate,
                 _format_eta(eta))
    with self.writer.as_default(step=step):
      tf.summary.scalar("loss", loss)
      tf.summary.scalar("accuracy", acc)
      tf.summary.scalar("learning_rate", lr)
      tf.summary.scalar("images_per_second", rate)
    for m in self.metrics.values():
      m.reset_state()
    self._window = (time.time(), step)
    return {"train_loss": loss, "train_accuracy": acc,
            "images_per_second": rate}

  def eval(self, step, results, final=False):
    if final:
      logging.info("final eval at step %d: top-1 %.4f top-5 %.4f (%s weights, "
                   "%d examples)", step, results["eval_top1"],
                   results["eval_top5"], results["eval_weights"],
                   results["eval_examples"])
    else:
      logging.info("eval at step %d: top-1 %.4f", step, results["eval_top1"])
    with self.eval_writer.as_default(step=step):
      for k in ("eval_loss", "eval_top1", "eval_top5"):
        tf.summary.scalar(k, results[k])

  def flush(self):
    self.writer.flush()
    self.eval_writer.flush()


class TrainingLoop:
  """Runs `train_steps` from the state's step to `last_step`, one input
  pipeline per epoch, with a log step every `log_every_steps`, a checkpoint
  step every `checkpoint_every_steps` (and at the end), an eval step every
  `eval_every_epochs` and a checkpoint + Preempted on SIGTERM.

  `train_steps(iterator, n)` is any tf.function taking n steps (as
  make_train_step returns); `evaluate()` returns eval metrics.
  """

  def __init__(self, *, data, strategy, train_steps, checkpoints, progress,
               evaluate_fn, global_batch, steps_per_epoch, last_step, seed=0,
               steps_per_loop=1, log_every_steps=100,
               checkpoint_every_steps=1000, eval_every_epochs=None):
    self.data = data
    self.strategy = strategy
    self.train_steps = train_steps
    self.checkpoints = checkpoints
    self.progress = progress
    self.evaluate_fn = evaluate_fn
    self.per_replica = global_batch // strategy.num_replicas_in_sync
    self.steps_per_epoch = steps_per_epoch
    self.last_step = last_step
    self.seed = seed
    self.steps_per_loop = steps_per_loop
    self.log_every_steps = log_every_steps
    self.checkpoint_every_steps = checkpoint_every_steps
    self.eval_every_epochs = eval_every_epochs
    self.results = {}

  def _epoch_iterator(self, epoch, in_epoch):
    dataset = self.strategy.distribute_datasets_from_function(
        lambda ctx: self.data.train_dataset(ctx, self.per_replica, epoch,
                                            self.seed, skip_steps=in_epoch))
    return iter(dataset)

  def _chunk(self, step, epoch_end):
    """Steps up to the next log / checkpoint / epoch boundary."""
    return min(self.steps_per_loop, epoch_end - step,
               self.log_every_steps - step % self.log_every_steps,
               self.checkpoint_every_steps - step % self.checkpoint_every_steps)

  def _eval_due(self, step):
    return bool(self.eval_every_epochs and step % self.steps_per_epoch == 0
                and (step // self.steps_per_epoch) % self.eval_every_epochs == 0
                and step < self.last_step and self.data.num_eval_examples)

  def run(self, step):
    """Trains from `step` to last_step; returns the step reached."""
    with _SigtermFlag() as sigterm:
      while step < self.last_step:
        epoch, in_epoch = divmod(step, self.steps_per_epoch)
        iterator = self._epoch_iterator(epoch, in_epoch)
        epoch_end = min((epoch + 1) * self.steps_per_epoch, self.last_step)
        while step < epoch_end:
          n = self._chunk(step, epoch_end)
          with pipeline_errors(self.data):
            self.train_steps(iterator, tf.constant(n))
          step += n
          if step % self.log_every_steps == 0 or step == self.last_step:
            self.results.update(self.progress.train(step))
          if step % self.checkpoint_every_steps == 0:
            self.checkpoints.save(step)
          if sigterm.raised:
            self.checkpoints.save(step)
            self.progress.flush()
            raise Preempted(f"SIGTERM: saved checkpoint at step {step} in "
                            f"{self.checkpoints.write_directory}; rerun the "
                            "same command to resume")
        if self._eval_due(step):
          self.progress.eval(step, self.evaluate_fn())
    self.checkpoints.save(step)
    return step


def _plain(value):
  """JSON-ready copy of a record (Keras may wrap dicts and lists)."""
  if isinstance(value, str) or value is None or isinstance(value, (bool, int,
                                                                   float)):
    return value
  if hasattr(value, "items"):
    return {str(k): _plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)) or hasattr(value, "__iter__"):
    return [_plain(v) for v in value]
  if isinstance(value, (np.integer, np.floating)):
    return value.item()
  return value


def run_build_record(model, data, has_ema):
  """The run's build record from the model's own (attach_build_record), with
  the run's facts added; None when the model does not say what it is."""
  own = getattr(model, "build_record", None)
  if isinstance(own, str):
    own = json.loads(own)
  if not own or not (own.get("model") or own.get("architecture")):
    return None
  record = _plain(own)
  if record.get("input_size") is None:
    record["input_size"] = [data.image_size, data.image_size]
  record["preprocessing"] = getattr(data, "preprocessing", None) or \
      record.get("preprocessing") or preprocessing.DEFAULT_NORMALIZATION
  record["eval_crop_fraction"] = getattr(data, "eval_crop_fraction", None)
  record["data"] = getattr(data, "spec", None)
  record["has_ema"] = bool(has_ema)
  record["weights"] = "ema" if has_ema else "raw"
  record.setdefault("format", build_record_lib.FORMAT)
  return record


def weights_fingerprint(model):
  """sha256 over every model weight (cross-replica values; under
  MultiWorkerMirroredStrategy every worker must call it)."""
  digest = hashlib.sha256()
  for w in model.weights:
    digest.update(np.ascontiguousarray(w.numpy()).tobytes())
  return digest.hexdigest()


class RunArtifacts:
  """The files a run leaves in MODEL_DIR, each written atomically by the chief:
  build.json (at the start), final.weights.h5 (the evaluated weights: EMA when
  the run has EMA) and final_raw.weights.h5 (EMA runs), both with the build
  record embedded, metrics.json and operative_config.gin (at the end)."""

  def __init__(self, model_dir, chief, record):
    self.model_dir = model_dir
    self.chief = chief
    self.record = record

  def check_resume(self, checkpoints):
    """A resumed run must build what the checkpoints hold (build.json)."""
    if not (self.chief and self.record and checkpoints.latest) or \
        _is_remote(self.model_dir):
      return
    existing = build_record_lib.read_run(self.model_dir)
    if existing is None:
      return
    where = os.path.join(self.model_dir, build_record_lib.RUN_FILE)
    build_record_lib.check_compatible(existing, self.record.get("model"),
                                      self.record.get("build", {}), where)
    if existing.get("input_size") not in (None, self.record.get("input_size")):
      raise UserError(f"{where} records input size {existing['input_size']}, "
                      f"but this run trains at {self.record['input_size']}; "
                      "resume with the same image_size or use a new model_dir")

  def write_start(self):
    if not self.chief:
      return
    if self.record is None:
      logging.warning("model_fn gave no build record (attach_build_record); "
                      "%s gets no build.json and the exporter will need the "
                      "model's flags (--model, --classes, --input_size ...)",
                      self.model_dir)
      return
    _write_text(os.path.join(self.model_dir, build_record_lib.RUN_FILE),
                json.dumps(self.record, indent=2) + "\n")

  def _save_weights(self, model, name, weights):
    if not self.chief:  # a collective read: other workers save privately
      scratch = tempfile.mkdtemp(prefix="worker_weights_")
      try:
        model.save_weights(os.path.join(scratch, name))
      finally:
        shutil.rmtree(scratch, ignore_errors=True)
      return None
    path = os.path.join(self.model_dir, name)
    record = dict(self.record, weights=weights) if self.record else None
    def write(tmp):
      model.save_weights(tmp)
      if record:
        build_record_lib.write_h5(tmp, record)
    write_file(path, write)
    return path

  def write_weights(self, model, ema):
    """Every worker calls this (reads are collective under multi-worker).
    Returns (path of the evaluated weights or None, their fingerprint)."""
    raw_path = None
    if ema is not None:
      raw_path = self._save_weights(model, "final_raw.weights.h5", "raw")
      ema.swap()
    try:
      path = self._save_weights(model, "final.weights.h5",
                                "ema" if ema is not None else "raw")
      fingerprint = weights_fingerprint(model)
    finally:
      if ema is not None:
        ema.swap()
    return path, raw_path, fingerprint

  def write_end(self, results):
    if not self.chief:
      return
    _write_text(os.path.join(self.model_dir, "metrics.json"),
                json.dumps(results, indent=2) + "\n")
    config = gin.operative_config_str()
    if config.strip():
      _write_text(os.path.join(self.model_dir, "operative_config.gin"), config)


class _NoLock:
  def __enter__(self):
    return self

  def __exit__(self, *exc):
    return False


def run_lock(model_dir, chief):
  """fileio.RunLock on MODEL_DIR for the chief of a local run directory (also
  refuses a model_dir that is a file or read-only). Remote directories
  (gs://...) cannot be flock-ed: logged, not locked."""
  if not chief:
    return _NoLock()
  if _is_remote(model_dir):
    logging.warning("model_dir %s is remote: it is not locked against a "
                    "second job", model_dir)
    return _NoLock()
  return fileio.RunLock(model_dir, what="model_dir")



# -------------------------------------------------------------------- train
@gin.configurable(denylist=["model_dir"])
def train(model_dir, data=gin.REQUIRED, model_fn=mobilenetv4_model,
          loss_fn=None, batch_size=gin.REQUIRED, epochs=gin.REQUIRED,
          peak_learning_rate=gin.REQUIRED, warmup_epochs=0,
          cosine_decay_epochs=None, cosine_decay_alpha=0.0,
          weight_decay=0.0, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
          ema_decay=None, gradient_clip_norm=None,
          strategy="default", tpu=None, mixed_precision="auto",
          steps_per_loop=1, checkpoint_every_steps=1000, keep_checkpoints=3,
          eval_every_epochs=None, log_every_steps=100, max_steps=None,
          seed=0):
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
  started = time.time()
  check_train_args(batch_size, epochs, peak_learning_rate, warmup_epochs,
                   cosine_decay_epochs, cosine_decay_alpha, weight_decay,
                   beta_1, beta_2, epsilon, ema_decay, gradient_clip_norm,
                   steps_per_loop, checkpoint_every_steps, keep_checkpoints,
                   eval_every_epochs, log_every_steps, max_steps, seed,
                   mixed_precision, strategy)
  if model_fn is mobilenetv4_model:
    mobilenetv4_model(num_classes=1, image_size=MIN_IMAGE_SIZE,
                      check_only=True)
  model_dir = os.fspath(model_dir)
  chief = is_chief_from_tf_config(strategy) if isinstance(strategy, str) \
      else _is_chief(strategy)
  with run_lock(model_dir, chief):
    return _train_locked(
        model_dir, data, model_fn, loss_fn, started=started,
        batch_size=batch_size, epochs=epochs,
        peak_learning_rate=peak_learning_rate, warmup_epochs=warmup_epochs,
        cosine_decay_epochs=cosine_decay_epochs,
        cosine_decay_alpha=cosine_decay_alpha, weight_decay=weight_decay,
        beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, ema_decay=ema_decay,
        gradient_clip_norm=gradient_clip_norm, strategy=strategy, tpu=tpu,
        mixed_precision=mixed_precision, steps_per_loop=steps_per_loop,
        checkpoint_every_steps=checkpoint_every_steps,
        keep_checkpoints=keep_checkpoints, eval_every_epochs=eval_every_epochs,
        log_every_steps=log_every_steps, max_steps=max_steps, seed=seed)


def _train_locked(model_dir, data, model_fn, loss_fn, *, started, batch_size,
                  epochs, peak_learning_rate, warmup_epochs,
                  cosine_decay_epochs, cosine_decay_alpha, weight_decay,
                  beta_1, beta_2, epsilon, ema_decay, gradient_clip_norm,
                  strategy, tpu, mixed_precision, steps_per_loop,
                  checkpoint_every_steps, keep_checkpoints, eval_every_epochs,
                  log_every_steps, max_steps, seed):
  strategy = make_strategy(strategy, tpu) if isinstance(strategy, str) \
      else strategy
  chief = _is_chief(strategy)
  policy = _mixed_precision_policy(mixed_precision, strategy)
  keras.mixed_precision.set_global_policy(policy or "float32")
  # Dropout RNG state lives in variables, so checkpoints carry it.
  keras.backend.experimental.enable_tf_random_generator()
  keras.utils.set_random_seed(seed)

  data = data() if callable(data) else data
  loss_fn = loss_fn or categorical_crossentropy()
  replicas = strategy.num_replicas_in_sync
  if batch_size % replicas:
    raise UserError(f"train.batch_size {batch_size} is not divisible by the "
                    f"{replicas} replicas of the '{type(strategy).__name__}'")
  steps_per_epoch = data.steps_per_epoch(batch_size)
  total_steps = int(epochs * steps_per_epoch)
  if total_steps < 1:
    raise UserError(f"train.epochs {epochs} x {steps_per_epoch} steps per "
                    "epoch is less than one step; raise epochs")
  last_step = min(total_steps, max_steps) if max_steps else total_steps

  state = build_state(
      model_fn, data, strategy, steps_per_epoch=steps_per_epoch, epochs=epochs,
      peak_learning_rate=peak_learning_rate, warmup_epochs=warmup_epochs,
      cosine_decay_epochs=cosine_decay_epochs,
      cosine_decay_alpha=cosine_decay_alpha, weight_decay=weight_decay,
      beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, ema_decay=ema_decay,
      gradient_clip_norm=gradient_clip_norm, policy=policy)
  checkpoints = Checkpoints(state, model_dir, strategy, chief,
                            keep=keep_checkpoints)
  artifacts = RunArtifacts(model_dir, chief, run_build_record(
      state.model, data, state.ema is not None))
  try:
    artifacts.check_resume(checkpoints)
    restored = checkpoints.restore(state.optimizer.iterations)
    step = int(state.optimizer.iterations.numpy())
    artifacts.write_start()
    logging.info("%s: %s parameters, %d classes, %dpx; %d steps (%s epochs x "
                 "%d), global batch %d on %d replica(s); checkpoints in %s",
                 state.model.name, f"{state.model.count_params():,}",
                 data.num_classes, data.image_size, last_step, epochs,
                 steps_per_epoch, batch_size, replicas,
                 checkpoints.write_directory)
    if restored:
      logging.info("resumed from %s at step %d", restored, step)

    def evaluate_now():
      return evaluate(state.model, data, loss_fn, strategy, batch_size,
                      state.ema)

    progress = ProgressLog(model_dir, chief, batch_size=batch_size,
                           steps_per_epoch=steps_per_epoch,
                           last_step=last_step, schedule=state.schedule,
                           metrics=state.metrics, step=step)
    loop = TrainingLoop(
        data=data, strategy=strategy,
        train_steps=make_train_step(state.model, state.optimizer, loss_fn,
                                    strategy, batch_size, state.ema,
                                    state.metrics),
        checkpoints=checkpoints, progress=progress, evaluate_fn=evaluate_now,
        global_batch=batch_size, steps_per_epoch=steps_per_epoch,
        last_step=last_step, seed=seed, steps_per_loop=steps_per_loop,
        log_every_steps=log_every_steps,
        checkpoint_every_steps=checkpoint_every_steps,
        eval_every_epochs=eval_every_epochs)
    step = loop.run(step)
    results = dict(loop.results)
    if data.num_eval_examples:
      ev = evaluate_now()
      results.update(ev)
      progress.eval(step, ev, final=True)
    progress.flush()
    weights, raw_weights, fingerprint = artifacts.write_weights(state.model,
                                                                state.ema)
    results.update(step=step, epochs=step / steps_per_epoch,
                   wall_time_s=time.time() - started,
                   checkpoint=checkpoints.latest, replicas=replicas,
                   global_batch=batch_size, chief=chief,
                   weights_sha256=fingerprint)
    if weights:
      results["weights"] = weights
    if raw_weights:
      results["raw_weights"] = raw_weights
    if artifacts.record:
      results["build_record"] = os.path.join(model_dir,
                                             build_record_lib.RUN_FILE)
    artifacts.write_end(results)
    return results
  finally:
    checkpoints.close()
