"""The training loop: tf.distribute, checkpoints with auto-resume, EMA evaluation.

Public pieces (the distillation trainer binds to these):
  train(model_dir, data, ...)         gin-configurable entry point, returns metrics
  input_pipeline(dataset, ...)        gin-configurable ImageClassificationData factory
  mobilenetv4_model(num_classes, image_size, ...)   default model_fn
  categorical_crossentropy(label_smoothing)         default loss_fn factory
  make_strategy(name, tpu)            tf.distribute strategy from a flag value
  make_train_step(...)                one distributed optimisation step (tf.function)
"""
import json
import math
import os
import re
import signal
import tempfile
import time

from absl import logging
import gin
import tensorflow as tf
import tf_keras as keras

import mobilenetv4
from experiments import data as data_lib
from experiments import optim


class Preempted(Exception):
  """Raised after saving a checkpoint when SIGTERM arrived."""


# ---------------------------------------------------------------- gin edges
@gin.configurable
def input_pipeline(dataset="sklearn_digits", eval_dataset=None, image_size=224,
                   crop="inception", crop_area_range=(0.08, 1.0), flip=True,
                   randaug_layers=0, randaug_magnitude=10.0, randaug_prob=None,
                   randaug_exclude_ops=(), mix_prob=0.0, mixup_alpha=0.8,
                   cutmix_alpha=1.0, mix_switch_prob=0.5,
                   eval_crop_fraction=0.875, shuffle_buffer=10_000,
                   deterministic=False, cache=False, tfds_data_dir=None,
                   tfds_manual_dir=None, tfds_download=False, num_classes=None,
                   num_train_examples=None, num_eval_examples=None):
  """Dataset spec strings (see experiments.data) plus Table 10 augmentation."""
  kw = dict(tfds_data_dir=tfds_data_dir, tfds_manual_dir=tfds_manual_dir,
            tfds_download=tfds_download, num_classes=num_classes)
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


@gin.configurable
def mobilenetv4_model(num_classes, image_size, name="conv_small", dropout=None,
                      stochastic_depth_rate=0.0, l2=0.0, width_multiplier=None,
                      bn_momentum=0.99, bn_epsilon=1e-5):
  """A MobileNetV4 classifier giving logits.

  `l2` follows Model Garden: loss += l2 * sum(w^2) / 2 over conv/dense kernels.
  `stochastic_depth_rate` is the peak rate; the builder grows it linearly with
  block depth, attention blocks included.
  """
  regularizer = keras.regularizers.L2(l2 / 2.0) if l2 else None
  return mobilenetv4.create_model(
      name, input_shape=(image_size, image_size, 3), classes=num_classes,
      dropout=dropout, stochastic_depth_rate=stochastic_depth_rate,
      width_multiplier=width_multiplier, bn_momentum=bn_momentum,
      bn_epsilon=bn_epsilon, kernel_regularizer=regularizer)


@gin.configurable
def categorical_crossentropy(label_smoothing=0.0):
  """Per-example CE from logits against dense (possibly soft) label vectors."""
  def loss_fn(labels, logits):
    return keras.losses.categorical_crossentropy(
        labels, logits, from_logits=True, label_smoothing=label_smoothing)
  return loss_fn


# ------------------------------------------------------------ distribution
def make_strategy(name="default", tpu=None):
  """'default' | 'mirrored' | 'multi_worker' | 'tpu' -> tf.distribute strategy.

  'mirrored' uses every local GPU, or every (logical) CPU device if no GPU.
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
  raise ValueError(f"unknown strategy '{name}'; choose default, mirrored, "
                   "multi_worker or tpu")


def _is_tpu(strategy):
  return isinstance(strategy, tf.distribute.TPUStrategy)


def _is_chief(strategy):
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not getattr(resolver, "task_type", None):
    return True
  if resolver.task_type == "chief":
    return True
  has_chief = "chief" in resolver.cluster_spec().as_dict()
  return resolver.task_type == "worker" and resolver.task_id == 0 and \
      not has_chief


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
  raise ValueError(f"unknown mixed_precision '{mixed_precision}'; choose auto, "
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
    for batch in dataset:
      totals += eval_step(batch)
  finally:
    if ema is not None:
      ema.swap()
  loss, top1, top5, n = totals.numpy().tolist()
  return {"eval_loss": loss / n, "eval_top1": top1 / n, "eval_top5": top5 / n,
          "eval_examples": int(n), "eval_weights": "ema" if ema else "model"}


# -------------------------------------------------------------------- train
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
  return (useful or lines or ["unknown error"])[0]


def _format_eta(seconds):
  seconds = int(max(seconds, 0))
  return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


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
  AdamW; EMA); `data` is an ImageClassificationData (or any object with its
  interface) or a callable returning one; `loss_fn(labels, logits)` gives
  per-example losses (default: categorical_crossentropy() as bound in gin).
  Resumes from the newest checkpoint in model_dir/checkpoints. `max_steps`
  stops early (smoke tests) without changing the schedule.
  """
  started = time.time()
  strategy = make_strategy(strategy, tpu) if isinstance(strategy, str) \
      else strategy
  policy = _mixed_precision_policy(mixed_precision, strategy)
  keras.mixed_precision.set_global_policy(policy or "float32")
  # Dropout RNG state lives in variables, so checkpoints carry it.
  keras.backend.experimental.enable_tf_random_generator()
  keras.utils.set_random_seed(seed)

  data = data() if callable(data) else data
  loss_fn = loss_fn or categorical_crossentropy()
  replicas = strategy.num_replicas_in_sync
  if batch_size % replicas:
    raise ValueError(f"batch_size {batch_size} is not divisible by the "
                     f"{replicas} replicas of the '{type(strategy).__name__}'")
  per_replica = batch_size // replicas
  steps_per_epoch = data.steps_per_epoch(batch_size)
  total_steps = int(epochs * steps_per_epoch)
  last_step = min(total_steps, max_steps) if max_steps else total_steps
  if warmup_epochs >= (cosine_decay_epochs or epochs):
    raise ValueError(f"warmup_epochs ({warmup_epochs}) must be shorter than the "
                     f"cosine decay ({cosine_decay_epochs or epochs} epochs)")
  chief = _is_chief(strategy)
  ckpt_dir = os.path.join(model_dir, "checkpoints") if chief else \
      tempfile.mkdtemp(prefix="worker_ckpt_")

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
    metrics = {"loss": keras.metrics.Mean(), "accuracy": keras.metrics.Accuracy()}
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer,
                                     rng=rng_states,
                                     **({"ema": ema} if ema else {}))
    manager = tf.train.CheckpointManager(checkpoint, ckpt_dir,
                                         max_to_keep=keep_checkpoints)
    restored = manager.restore_or_initialize()
  step = int(optimizer.iterations.numpy())
  logging.info("%s: %s parameters, %d classes, %dpx; %d steps (%s epochs x %d),"
               " global batch %d on %d replica(s); checkpoints in %s",
               model.name, f"{model.count_params():,}", data.num_classes,
               data.image_size, last_step, epochs, steps_per_epoch, batch_size,
               replicas, ckpt_dir)
  if restored:
    logging.info("resumed from %s at step %d", restored, step)
  train_steps = make_train_step(model, optimizer, loss_fn, strategy,
                                batch_size, ema, metrics)
  writer = tf.summary.create_file_writer(os.path.join(model_dir, "train")) \
      if chief else tf.summary.create_noop_writer()
  eval_writer = tf.summary.create_file_writer(os.path.join(model_dir, "eval")) \
      if chief else tf.summary.create_noop_writer()

  saved = [step if restored else -1]

  def save():  # at most once per step
    if saved[0] != step:
      manager.save(checkpoint_number=step)
      saved[0] = step

  results = {}
  window_start, window_step = time.time(), step
  with _SigtermFlag() as sigterm:
    while step < last_step:
      epoch, in_epoch = divmod(step, steps_per_epoch)
      dataset = strategy.distribute_datasets_from_function(
          lambda ctx, e=epoch, s=in_epoch: data.train_dataset(
              ctx, per_replica, e, seed, skip_steps=s))
      iterator = iter(dataset)
      epoch_end = min((epoch + 1) * steps_per_epoch, last_step)
      while step < epoch_end:
        # Run up to the next log / checkpoint / epoch boundary in one call.
        n = min(steps_per_loop, epoch_end - step,
                log_every_steps - step % log_every_steps,
                checkpoint_every_steps - step % checkpoint_every_steps)
        try:
          train_steps(iterator, tf.constant(n))
        except tf.errors.InvalidArgumentError as e:
          raise data_lib.DataError(
              "input pipeline failed: " + _essential(e.message)) from None
        step += n
        if step % log_every_steps == 0 or step == last_step:
          now = time.time()
          rate = (step - window_step) * batch_size / max(now - window_start, 1e-9)
          lr = float(schedule(step))
          loss = float(metrics["loss"].result())
          acc = float(metrics["accuracy"].result())
          eta = (last_step - step) * batch_size / max(rate, 1e-9)
          logging.info("step %d/%d  epoch %.2f  loss %.4f  train_acc %.3f  "
                       "lr %.3g  %.1f img/s  ETA %s", step, last_step,
                       step / steps_per_epoch, loss, acc, lr, rate,
                       _format_eta(eta))
          with writer.as_default(step=step):
            tf.summary.scalar("loss", loss)
            tf.summary.scalar("accuracy", acc)
            tf.summary.scalar("learning_rate", lr)
            tf.summary.scalar("images_per_second", rate)
          results.update(train_loss=loss, train_accuracy=acc,
                         images_per_second=rate)
          for m in metrics.values():
            m.reset_state()
          window_start, window_step = time.time(), step
        if step % checkpoint_every_steps == 0:
          save()
        if sigterm.raised:
          save()
          writer.flush()
          raise Preempted(f"SIGTERM: saved checkpoint at step {step} in "
                          f"{ckpt_dir}; rerun the same command to resume")
      if (eval_every_epochs and step % steps_per_epoch == 0 and
          (step // steps_per_epoch) % eval_every_epochs == 0 and
          step < last_step and data.num_eval_examples):
        ev = evaluate(model, data, loss_fn, strategy, batch_size, ema)
        logging.info("eval at step %d: top-1 %.4f", step, ev["eval_top1"])
        with eval_writer.as_default(step=step):
          for k in ("eval_loss", "eval_top1", "eval_top5"):
            tf.summary.scalar(k, ev[k])
  save()
  if data.num_eval_examples:
    ev = evaluate(model, data, loss_fn, strategy, batch_size, ema)
    results.update(ev)
    logging.info("final eval at step %d: top-1 %.4f top-5 %.4f (%s weights, "
                 "%d examples)", step, ev["eval_top1"], ev["eval_top5"],
                 ev["eval_weights"], ev["eval_examples"])
    with eval_writer.as_default(step=step):
      for k in ("eval_loss", "eval_top1", "eval_top5"):
        tf.summary.scalar(k, ev[k])
  writer.flush()
  eval_writer.flush()
  results.update(step=step, epochs=step / steps_per_epoch,
                 wall_time_s=time.time() - started,
                 checkpoint=manager.latest_checkpoint,
                 replicas=replicas, global_batch=batch_size)
  if chief:
    weights_path = os.path.join(model_dir, "final.weights.h5")
    if ema is not None:
      ema.swap()
    model.save_weights(weights_path)
    if ema is not None:
      ema.swap()
    results["weights"] = weights_path
    with open(os.path.join(model_dir, "metrics.json"), "w") as f:
      json.dump(results, f, indent=2)
  return results
