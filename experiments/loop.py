"""The reusable training loop and its steps (the trainer, distillation and NAS share them).

  TrainingState, build_state(...)   model + schedule + AdamW + EMA + metrics under a strategy
  Checkpoints                       tf.train.Checkpoint(model=, optimizer=, rng=, ema=) and its
                                    manager: the chief writes MODEL_DIR/checkpoints, every worker
                                    restores from there, the others save to a private temp dir
  ProgressLog                       progress line + TensorBoard scalars (chief)
  TrainingLoop                      steps, with log / checkpoint / eval steps and SIGTERM between
  SigtermFlag                       SIGTERM (preemption notice) as a flag checked between steps
  RunArtifacts                      build.json, final weights (EMA and raw) with their build
                                    record, metrics.json, operative_config.gin; all atomic
  run_lock(model_dir, chief)        fileio.RunLock on the run directory (chief, local dirs)
  pipeline_errors(data)             input-pipeline failures -> one-line DataError

`experiments.trainer.train` wires these together; see docs/training.md.
"""

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import signal
import tempfile
import time
from typing import Any, Optional

from absl import logging
import gin
import numpy as np
import tensorflow as tf
import tf_keras as keras

from mobilenetv4 import build_record as build_record_lib
from mobilenetv4 import fileio
from mobilenetv4 import preprocessing
from mobilenetv4.cli import UserError
from experiments import data as data_lib
from experiments import optim


class Preempted(Exception):
    """Raised after saving a checkpoint when SIGTERM arrived."""


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


class SigtermFlag:
    """Turns SIGTERM (preemption notice) into a flag checked between steps (a context manager;
    a job that does work outside TrainingLoop.run holds one and passes it to the loop)."""

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
    useful = [
        l
        for l in lines
        if not l.startswith(("[[", "Detected at node", "Graph execution error", "<stack traces"))
    ]
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
                raise data_lib.DataError(
                    f"TFRecord file {found[0]} is corrupt or "
                    f"truncated ({found[1]}); re-create or remove "
                    "it"
                ) from None
            raise data_lib.DataError(
                f"input pipeline failed: corrupt input data ({_essential(exc.message)})"
            ) from None
        if exc_type is not None and issubclass(exc_type, tf.errors.InvalidArgumentError):
            raise data_lib.DataError("input pipeline failed: " + _essential(exc.message)) from None
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


def build_state(model_fn, data, strategy, recipe, *, steps_per_epoch, policy=None):
    """Model, schedule, AdamW (loss-scaled under float16), EMA and train
    metrics, built under `strategy.scope()`.

    Args:
      model_fn: `model_fn(num_classes=, image_size=)` -> tf_keras model.
      data: the run's `experiments.data.TrainingData`.
      strategy: the tf.distribute strategy.
      recipe: paper Table 10's recipe as attributes (`experiments.trainer.TrainArgs`): epochs,
        peak_learning_rate, warmup_epochs, cosine_decay_epochs, cosine_decay_alpha, weight_decay,
        beta_1, beta_2, epsilon, ema_decay, gradient_clip_norm.
      steps_per_epoch: optimizer steps per epoch (the schedule is in epochs).
      policy: the mixed-precision policy name, or None.
    """
    with strategy.scope():
        model = model_fn(num_classes=data.num_classes, image_size=data.image_size)
        schedule = optim.WarmupCosineDecay(
            recipe.peak_learning_rate,
            decay_steps=max(
                1, round((recipe.cosine_decay_epochs or recipe.epochs) * steps_per_epoch)
            ),  # from step 0
            warmup_steps=round(recipe.warmup_epochs * steps_per_epoch),
            alpha=recipe.cosine_decay_alpha,
        )
        optimizer = optim.adamw(
            model,
            schedule,
            recipe.weight_decay,
            recipe.beta_1,
            recipe.beta_2,
            recipe.epsilon,
            clipnorm=recipe.gradient_clip_norm,
        )
        if policy == "mixed_float16":
            optimizer = keras.mixed_precision.LossScaleOptimizer(optimizer)
        optimizer.build(model.trainable_variables)
        ema = optim.EMA(model, recipe.ema_decay) if recipe.ema_decay else None
        rng_states = _random_generator_states(model)
        metrics = {"loss": keras.metrics.Mean(), "accuracy": keras.metrics.Accuracy()}
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
                model=state.model,
                optimizer=state.optimizer,
                rng=state.rng_states,
                **({"ema": state.ema} if state.ema is not None else {}),
            )
            self.manager = tf.train.CheckpointManager(
                self.checkpoint, self.write_directory, max_to_keep=keep
            )
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
        return (
            tf.train.latest_checkpoint(self.directory)
            if self.chief
            else self.manager.latest_checkpoint
        )

    def close(self):
        if self._temp:
            shutil.rmtree(self._temp, ignore_errors=True)


class ProgressLog:
    """The progress line every log_every_steps and the TensorBoard scalars
    (MODEL_DIR/train and MODEL_DIR/eval, chief only)."""

    def __init__(self, model_dir, chief, state, step, *, batch_size, steps_per_epoch, last_step):
        """`state` is the trainer's TrainState (its learning-rate schedule and metrics are read);
        `step` is where this run starts."""
        make = (
            (lambda d: tf.summary.create_file_writer(os.path.join(model_dir, d)))
            if chief
            else (lambda d: tf.summary.create_noop_writer())
        )
        self.writer, self.eval_writer = make("train"), make("eval")
        self.batch_size = batch_size
        self.steps_per_epoch = steps_per_epoch
        self.last_step = last_step
        self.schedule = state.schedule
        self.metrics = state.metrics
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
        logging.info(
            "step %d/%d  epoch %.2f  loss %.4f  train_acc %.3f  lr %.3g  %.1f img/s  ETA %s",
            step,
            self.last_step,
            step / self.steps_per_epoch,
            loss,
            acc,
            lr,
            rate,
            _format_eta(eta),
        )
        with self.writer.as_default(step=step):
            tf.summary.scalar("loss", loss)
            tf.summary.scalar("accuracy", acc)
            tf.summary.scalar("learning_rate", lr)
            tf.summary.scalar("images_per_second", rate)
        for m in self.metrics.values():
            m.reset_state()
        self._window = (time.time(), step)
        return {"train_loss": loss, "train_accuracy": acc, "images_per_second": rate}

    def eval(self, step, results, final=False):
        if final:
            logging.info(
                "final eval at step %d: top-1 %.4f top-5 %.4f (%s weights, %d examples)",
                step,
                results["eval_top1"],
                results["eval_top5"],
                results["eval_weights"],
                results["eval_examples"],
            )
        else:
            logging.info("eval at step %d: top-1 %.4f", step, results["eval_top1"])
        with self.eval_writer.as_default(step=step):
            for k in ("eval_loss", "eval_top1", "eval_top5"):
                tf.summary.scalar(k, results[k])

    def flush(self):
        self.writer.flush()
        self.eval_writer.flush()


@dataclasses.dataclass
class TrainingLoop:
    """Runs `train_steps` from the state's step to `last_step`, one input
    pipeline per epoch, with a log step every `log_every_steps`, a checkpoint
    step every `checkpoint_every_steps` (and at the end), an eval step every
    `eval_every_epochs` and a checkpoint + Preempted on SIGTERM.

    `train_steps(iterator, n)` is any callable taking n steps from the epoch's distributed
    iterator (a tf.function as make_train_step returns, or a Python step callback like the
    NAS search's); `evaluate()` returns eval metrics. `sigterm`: a SigtermFlag the caller
    already holds (None: the loop holds its own while it runs).
    """

    data: Any
    strategy: Any
    train_steps: Any
    checkpoints: Any
    progress: Any
    evaluate_fn: Any
    global_batch: int
    steps_per_epoch: int
    last_step: int
    seed: int = 0
    steps_per_loop: int = 1
    log_every_steps: int = 100
    checkpoint_every_steps: int = 1000
    eval_every_epochs: Optional[int] = None
    sigterm: SigtermFlag | None = None
    results: dict = dataclasses.field(default_factory=dict)

    @property
    def per_replica(self):
        return self.global_batch // self.strategy.num_replicas_in_sync

    def _epoch_iterator(self, epoch, in_epoch):
        dataset = self.strategy.distribute_datasets_from_function(
            lambda ctx: self.data.train_dataset(
                ctx, self.per_replica, epoch, self.seed, skip_steps=in_epoch
            )
        )
        return iter(dataset)

    def _chunk(self, step, epoch_end):
        """Steps up to the next log / checkpoint / epoch boundary."""
        return min(
            self.steps_per_loop,
            epoch_end - step,
            self.log_every_steps - step % self.log_every_steps,
            self.checkpoint_every_steps - step % self.checkpoint_every_steps,
        )

    def _eval_due(self, step):
        return bool(
            self.eval_every_epochs
            and step % self.steps_per_epoch == 0
            and (step // self.steps_per_epoch) % self.eval_every_epochs == 0
            and step < self.last_step
            and self.data.num_eval_examples
        )

    def run(self, step):
        """Trains from `step` to last_step; returns the step reached."""
        held = SigtermFlag() if self.sigterm is None else contextlib.nullcontext(self.sigterm)
        with held as sigterm:
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
                        raise Preempted(
                            f"SIGTERM: saved checkpoint at step {step} in "
                            f"{self.checkpoints.write_directory}; rerun the "
                            "same command to resume"
                        )
                if self._eval_due(step):
                    self.progress.eval(step, self.evaluate_fn())
        self.checkpoints.save(step)
        return step


def _plain(value):
    """JSON-ready copy of a record (Keras may wrap dicts and lists)."""
    if isinstance(value, str) or value is None or isinstance(value, (bool, int, float)):
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
    record["preprocessing"] = (
        getattr(data, "preprocessing", None)
        or record.get("preprocessing")
        or preprocessing.DEFAULT_NORMALIZATION
    )
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
        if not (self.chief and self.record and checkpoints.latest) or _is_remote(self.model_dir):
            return
        existing = build_record_lib.read_run(self.model_dir)
        if existing is None:
            return
        where = os.path.join(self.model_dir, build_record_lib.RUN_FILE)
        build_record_lib.check_compatible(
            existing, self.record.get("model"), self.record.get("build", {}), where
        )
        if existing.get("input_size") not in (None, self.record.get("input_size")):
            raise UserError(
                f"{where} records input size {existing['input_size']}, "
                f"but this run trains at {self.record['input_size']}; "
                "resume with the same image_size or use a new model_dir"
            )

    def write_start(self):
        if not self.chief:
            return
        if self.record is None:
            logging.warning(
                "model_fn gave no build record (attach_build_record); "
                "%s gets no build.json and the exporter will need the "
                "model's flags (--model, --classes, --input_size ...)",
                self.model_dir,
            )
            return
        _write_text(
            os.path.join(self.model_dir, build_record_lib.RUN_FILE),
            json.dumps(self.record, indent=2) + "\n",
        )

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
            path = self._save_weights(
                model, "final.weights.h5", "ema" if ema is not None else "raw"
            )
            fingerprint = weights_fingerprint(model)
        finally:
            if ema is not None:
                ema.swap()
        return path, raw_path, fingerprint

    def write_end(self, results):
        if not self.chief:
            return
        _write_text(
            os.path.join(self.model_dir, "metrics.json"), json.dumps(results, indent=2) + "\n"
        )
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
        logging.warning("model_dir %s is remote: it is not locked against a second job", model_dir)
        return _NoLock()
    return _CheckedLock(model_dir)


class _CheckedLock(fileio.RunLock):
    """RunLock whose OS failures (a read-only file system, ...) are one line."""

    def __init__(self, model_dir):
        super().__init__(model_dir, what="model_dir")

    def acquire(self):
        try:
            return super().acquire()
        except OSError as e:
            raise UserError(
                f"cannot write into --model_dir {self.directory}: "
                f"{e.strerror or e}; choose another directory"
            ) from None
