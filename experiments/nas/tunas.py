"""The TuNAS search loop (paper Sec. 6.1): coarse then fine stage, or one stage.

`search(model_dir, ...)` is gin-configurable (experiments.nas.search is its CLI). Per stage:
a fresh supernet of the stage's space and a fresh controller, run by the shared training loop
(`experiments.loop.TrainingLoop`: epochs, checkpoints, log steps, SIGTERM) with `_Stage.train_steps`
as its step callback. Every step each replica samples its own architecture, the shared weights
take one step on a training batch with it, then the same architecture is scored on a held-out
reward batch (the validation split the data holds out of its training split, or its eval split
when it has none; never trained on):
  reward = accuracy + beta * sum_targets |cost / target - 1|   (beta = -0.1)
and the controller takes one REINFORCE step (after `rl_delay` of the stage; before that only the
baseline moves). Warm-up (TuNAS): during the first `filter_warmup` of a stage a training step uses
the largest width of every width decision with probability p, and during the first `op_warmup` an
op decision (block presence, DW kernels, expansion) is drawn uniformly with probability p, p
falling linearly from 1 to 0; the RL step always scores the controller's own sample. The stage's
result is the most likely architecture (argmax of every decision).

Files in MODEL_DIR: STAGE/checkpoints (resume after a kill: the supernet, its optimizer, the
controller with its Adam and baseline, the step), STAGE/ (TensorBoard: controller probabilities
per decision and choice, running cost per target, reward, accuracy), STAGE.json (the stage's
result, written when the stage ends; a rerun skips finished stages), and at the end
architecture.json (the found network as a spec, its decisions, costs) and build.json (the build
record: `experiments.train` trains it with `nas_model.architecture = 'MODEL_DIR/architecture.json'`).
"""

import dataclasses
import json
import os
import time
import types
from collections.abc import Mapping
from typing import Any

import gin
import numpy as np
import tensorflow as tf
import tf_keras as keras
from absl import logging

from experiments import loop, optim
from experiments import trainer as trainer_lib
from experiments.nas import controller as controller_lib
from experiments.nas import cost_models
from experiments.nas import supernet as supernet_lib
from mobilenetv4 import build_record, fileio, search_space, spec_costs
from mobilenetv4.cli import UserError

ARCHITECTURE_FILE = "architecture.json"
STAGE_PLANS = {"two_stage": ("coarse", "fine"), "one_stage": ("one_stage",)}


# The bounds of search's numeric arguments, checked by the trainer's one checker (trainer._check).
_BOUNDS = {
    "steps_per_stage": dict(low=0, low_open=True, integer=True),
    "batch_size": dict(low=0, low_open=True, integer=True),
    "learning_rate": dict(low=0, low_open=True),
    "rl_learning_rate": dict(low=0, low_open=True),
    "log_every_steps": dict(low=0, low_open=True, integer=True),
    "checkpoint_every_steps": dict(low=0, low_open=True, integer=True),
    "rl_delay": dict(low=0, high=1),
    "op_warmup": dict(low=0, high=1),
    "filter_warmup": dict(low=0, high=1),
    "tolerance": dict(low=0, high=1, optional=True),
}


def make_targets(targets, input_size, classes):
    """[Target] from {cost model name: target value} (make_cost_model's gin bindings apply)."""
    if not targets:
        raise UserError("search.targets is empty; give e.g. {'macs': 5e6}")
    return [
        cost_models.Target(
            cost_models.make_cost_model(name, input_size=input_size, classes=classes), value
        )
        for name, value in dict(targets).items()
    ]


def _warm(rng, samples, space, step, steps, op_warmup, filter_warmup):
    """Training-step architectures under TuNAS's op and filter warm-up."""
    out = samples.copy()
    for j, d in enumerate(space.decisions):
        width = d.name.endswith("/width")
        frac = filter_warmup if width else op_warmup
        p = max(0.0, 1.0 - step / (frac * steps)) if frac > 0 else 0.0
        for r in range(out.shape[0]):
            if rng.random() < p:
                out[r, j] = int(np.argmax(d.choices)) if width else rng.integers(len(d.choices))
    return out


class _StageLog:
    """The stage's progress (TrainingLoop's `progress`): a log line and TensorBoard scalars in
    MODEL_DIR/STAGE every log step: controller probabilities per decision and choice, the running
    means of reward, accuracy, loss and cost per target, the most likely architecture's cost over
    each target, the baseline."""

    def __init__(self, stage, name, log_dir, step):
        self.stage, self.name = stage, name
        self.writer = tf.summary.create_file_writer(log_dir)
        self.window = {
            "reward": [],
            "quality": [],
            "loss": [],
            **{f"cost/{t.cost_model.name}": [] for t in stage.targets},
        }
        self._since = (time.time(), step)

    def add(self, key, values):
        self.window[key].extend(values)

    def train(self, step):
        stage, targets = self.stage, self.stage.targets
        probs = stage.controller.probabilities()
        best_costs = stage.costs(stage.most_likely())
        means = {k: float(np.mean(v)) for k, v in self.window.items() if v}
        with self.writer.as_default(step=step):
            for key, value in means.items():
                tf.summary.scalar(key, value)
            for t, value in zip(targets, best_costs):
                tf.summary.scalar(f"most_likely/{t.cost_model.name}_over_target", value / t.value)
            tf.summary.scalar("baseline", float(stage.controller.baseline.numpy()))
            for d in stage.space.decisions:
                for choice, p in zip(d.choices, probs[d.name]):
                    tf.summary.scalar(f"controller/{d.name}/{choice}", float(p))
        since, since_step = self._since
        rate = (step - since_step) / max(time.time() - since, 1e-6)
        costs = ", ".join(
            f"{t.cost_model.name} {v / t.value:.3f}x target" for t, v in zip(targets, best_costs)
        )
        logging.info(
            "stage %s step %d/%d: reward %.3f, accuracy %.3f, most likely: %s (%.1f steps/s)",
            self.name,
            step,
            stage.args.steps_per_stage,
            means.get("reward", 0.0),
            means.get("quality", 0.0),
            costs,
            rate,
        )
        self.window = {k: [] for k in self.window}
        self._since = (time.time(), step)
        return {"search_" + k: v for k, v in means.items()}

    def eval(self, step, results, final=False):
        del step, results, final  # the search has no eval step: its rewards are its evaluation

    def flush(self):
        self.writer.flush()


class _Stage:
    """One TuNAS stage: supernet, controller, optimiser, checkpoints, and the step callback
    `train_steps` that `experiments.loop.TrainingLoop` runs."""

    def __init__(self, space, data, strategy, targets, args, model_dir):
        self.space, self.data, self.strategy, self.targets = space, data, strategy, targets
        self.args, self.model_dir = args, model_dir
        self.replicas = strategy.num_replicas_in_sync
        self.global_batch = args.batch_size * self.replicas
        logging.info(
            "stage %s: %d replica(s), each sampling its own architecture; %d decisions",
            space.stage,
            self.replicas,
            len(space.decisions),
        )
        with strategy.scope():
            self.net = supernet_lib.Supernet(space, data.num_classes, dropout=0.0)
            self.net(
                tf.zeros([1, data.image_size, data.image_size, 3]),
                tf.zeros([len(space.decisions)], tf.int32),
            )
            schedule = optim.WarmupCosineDecay(args.learning_rate, decay_steps=args.steps_per_stage)
            self.optimizer = keras.optimizers.Adam(schedule)
            self.optimizer.build(self.net.trainable_variables)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.controller = controller_lib.Controller(
            space.decisions, args.rl_learning_rate, seed=args.seed
        )
        holder = tf.Module()
        holder.supernet, holder.controller, holder.step = self.net, self.controller, self.step
        state = types.SimpleNamespace(
            model=holder, optimizer=self.optimizer, rng_states=[], ema=None
        )
        self.checkpoints = loop.Checkpoints(state, model_dir, strategy, chief=True)
        self.train_step, self.quality_step = _step_functions(
            self.net, self.optimizer, strategy, self.global_batch
        )
        self._reward_batches = None
        self.log = None

    def _per_replica(self, rows):
        rows = tf.constant(rows, tf.int32)
        return self.strategy.experimental_distribute_values_from_function(
            lambda ctx: rows[ctx.replica_id_in_sync_group]
        )

    def _local(self, value):
        return [float(v) for v in self.strategy.experimental_local_results(value)]

    def costs(self, arch):
        return [t.cost_model(arch) for t in self.targets]

    def most_likely(self):
        return self.space.decode(self.space.from_indices(self.controller.most_likely()))

    def train_steps(self, iterator, num_steps):
        """TrainingLoop's step callback: `num_steps` TuNAS steps, each a supernet step on the
        epoch's training iterator and a REINFORCE step on the reward iterator."""
        for _ in range(int(num_steps)):
            self._tunas_step(iterator)

    def _tunas_step(self, iterator):
        args, space, steps = self.args, self.space, self.args.steps_per_stage
        step = int(self.step.numpy())
        samples = self.controller.sample(self.replicas)
        rng = np.random.default_rng(args.seed * 1_000_003 + step)
        warm = _warm(rng, samples, space, step, steps, args.op_warmup, args.filter_warmup)
        loss = self._local(self.train_step(next(iterator), self._per_replica(warm)))
        quality = self._local(
            self.quality_step(next(self._reward_batches), self._per_replica(samples))
        )
        rewards = []
        for r in range(self.replicas):
            c = self.costs(space.decode(space.from_indices(samples[r])))
            rewards.append(cost_models.absolute_reward(quality[r], c, self.targets, args.beta))
            for t, value in zip(self.targets, c):
                self.log.add(f"cost/{t.cost_model.name}", [value])
        self.controller.update(samples, rewards, apply=step >= args.rl_delay * steps)
        self.log.add("reward", rewards)
        self.log.add("quality", quality)
        self.log.add("loss", loss)
        self.step.assign(step + 1)

    def run(self, name, sigterm):
        """Trains the stage to its last step (resuming from its checkpoints); its result."""
        args = self.args
        resumed = self.checkpoints.restore(self.step)
        step = int(self.step.numpy())
        if resumed:
            logging.info("stage %s: resumed at step %d from %s", name, step, resumed)
        self._reward_batches = reward_batches(self.data, self.strategy, args.batch_size)
        self.log = _StageLog(self, name, self.model_dir, step)
        training = loop.TrainingLoop(
            data=self.data,
            strategy=self.strategy,
            steps_per_epoch=self.data.steps_per_epoch(self.global_batch),
            train_steps=self.train_steps,  # supernet step, then REINFORCE step
            global_batch=self.global_batch,
            last_step=args.steps_per_stage,
            evaluate_fn=None,  # no eval step: the rewards are the search's evaluation
            checkpoints=self.checkpoints,
            progress=self.log,
            sigterm=sigterm,  # held for the whole search, stage set-up included
            seed=args.seed,
            log_every_steps=args.log_every_steps,
            checkpoint_every_steps=args.checkpoint_every_steps,
        )
        training.run(step)
        self.log.flush()
        return self.result(name)

    def result(self, name):
        tolerance = self.args.tolerance
        if tolerance and name == "coarse":
            tolerance /= 2  # half the band: the fine stage keeps room on both sides (docs/nas.md)
        pick = cost_models.select_architecture(
            self.space,
            self.controller.log_probabilities(),
            self.targets,
            tolerance,
            seed=self.args.seed,
        )
        logging.info(
            "stage %s result: %s (argmax off target by %.3f, result by %.3f)",
            name,
            pick["method"],
            pick["argmax_deviation"],
            pick["deviation"],
        )
        values = self.space.values(self.space.from_indices(pick["indices"]))
        arch = self.space.decode(values, name=f"nas_{self.space.name}_{name}")
        return {
            "stage": name,
            "space": self.space.name,
            "values": values,
            "probabilities": {k: v.tolist() for k, v in self.controller.probabilities().items()},
            "selection": pick,
            "architecture": search_space.architecture_to_dict(arch),
            "costs": {
                t.cost_model.name: {"value": v, "target": t.value, "ratio": v / t.value}
                for t, v in zip(self.targets, self.costs(arch))
            },
        }


def _step_functions(net, optimizer, strategy, global_batch):
    """(train_step, quality_step): tf.functions running one supernet step on a training batch
    and measuring a sampled architecture's accuracy on a reward batch, per replica."""

    def train_fn(images, labels, indices):
        with tf.GradientTape() as tape:
            logits = net(images, indices, training=True)
            per_example = keras.losses.categorical_crossentropy(labels, logits, from_logits=True)
            loss = tf.reduce_sum(per_example) / global_batch
        grads = tape.gradient(loss, net.trainable_variables)
        optimizer.apply_gradients(zip(grads, net.trainable_variables))
        return loss * global_batch / tf.cast(tf.shape(images)[0], tf.float32)

    def quality_fn(images, labels, weights, indices):
        logits = net(images, indices, training=False)
        hit = tf.cast(tf.argmax(logits, -1) == tf.argmax(labels, -1), tf.float32)
        return tf.reduce_sum(hit * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)

    @tf.function
    def train_step(batch, indices):
        return strategy.run(train_fn, args=(*batch, indices))

    @tf.function
    def quality_step(batch, indices):
        return strategy.run(quality_fn, args=(*batch, indices))

    return train_step, quality_step


def reward_split(data):
    """(split name, examples) the controller's rewards come from: the validation split the data
    holds out of its training split when it has one (`input_pipeline.validation_fraction`), else
    its eval split."""
    held_out = getattr(data, "num_validation_examples", 0)
    if held_out:
        return "validation", int(held_out)
    return "eval", int(data.num_eval_examples)


def reward_batches(data, strategy, batch_size):
    """An endless distributed iterator of (images, labels, weights) reward batches."""
    split, examples = reward_split(data)
    if split == "eval":
        logging.warning(
            "rewards come from the data's eval split, the split stand-alone accuracies are "
            "measured on; set input_pipeline.validation_fraction to hold rewards apart"
        )
    make = data.validation_dataset if split == "validation" else data.eval_dataset
    n = max(1, examples // (batch_size * strategy.num_replicas_in_sync))
    return iter(
        strategy.distribute_datasets_from_function(lambda ctx: make(ctx, batch_size, n).repeat())
    )


def _jsonable(values):
    return {k: (v if not isinstance(v, np.generic) else v.item()) for k, v in values.items()}


@gin.configurable(denylist=["model_dir"])
def search(
    model_dir,
    data=gin.REQUIRED,
    space: str = "quickstart",
    plan: str = "two_stage",
    targets: Mapping[str, float] | None = None,
    beta: float = -0.1,
    fixed: Mapping[str, Any] | None = None,
    expressive: bool = False,
    steps_per_stage: int = 300,
    batch_size: int = 32,
    learning_rate: float = 0.005,
    rl_learning_rate: float = 0.05,
    strategy: str = "default",
    rl_delay: float = 0.25,
    op_warmup: float = 0.25,
    filter_warmup: float = 0.25,
    tolerance: float | None = None,
    tpu: str | None = None,
    seed: int = 0,
    log_every_steps: int = 50,
    checkpoint_every_steps: int = 100,
):
    """Runs the search into `model_dir`; returns the summary dict.

    Args:
      model_dir: where checkpoints, TensorBoard logs and the results go (locked while running).
      data: a TrainingData (e.g. @input_pipeline): the supernet trains on its train split, the
        rewards come from its validation split (held out of the training split by
        `input_pipeline.validation_fraction`), or from its eval split when it has none.
      space: a registered search space (mobilenetv4.search_space.SPACES).
      plan: "two_stage" (coarse, then fine) or "one_stage".
      targets: {cost model name: target}, e.g. {'macs': 4e6} or dual {'macs': .., 'latency': ..}.
      beta: the reward's cost weight (TuNAS: -0.1).
      fixed: {decision name: value} held fixed in every stage.
      expressive: UIB expansions (2, 3, 4, 6) searched instead of 4 alone.
      steps_per_stage: supernet/controller steps per stage.
      batch_size: per-replica batch of both the training and the RL step.
      learning_rate: peak Adam learning rate of the shared weights (cosine decay).
      rl_learning_rate: Adam (beta_1 = 0) learning rate of the controller logits.
      strategy: tf.distribute strategy name (experiments.trainer.make_strategy).
      rl_delay: fraction of a stage before the controller learns.
      op_warmup: fraction of a stage with op warm-up.
      filter_warmup: fraction of a stage with filter warm-up.
      tolerance: a stage's result is the most likely architecture within this relative band of
        every target (cost_models.select_architecture); None: the argmax of every decision.
      tpu: TPU address for strategy "tpu".
      seed: controller sampling and warm-up seed.
      log_every_steps: TensorBoard and log interval.
      checkpoint_every_steps: checkpoint interval.
    """
    args = types.SimpleNamespace(**locals())  # first statement: exactly search's arguments
    if plan not in STAGE_PLANS:
        raise UserError(f"search.plan must be one of {', '.join(STAGE_PLANS)}, got {plan!r}")
    for name, bounds in _BOUNDS.items():
        trainer_lib._check(f"search.{name}", getattr(args, name), **bounds)  # pylint: disable=protected-access
    if callable(data):  # `search.data = @input_pipeline`
        data = data()
    base = search_space.get(space, "one_stage", expressive=expressive)
    if fixed:
        base = base.with_fixed(dict(fixed))  # UserError for a decision that does not exist
    tgts = make_targets(targets, data.image_size, data.num_classes)
    stages = STAGE_PLANS[plan]
    ranges = cost_models.check_reachable(base.with_fixed({}, stage=stages[0]), tgts)
    strat = trainer_lib.make_strategy(strategy, tpu)
    with loop.run_lock(model_dir, True), loop.SigtermFlag() as sigterm:
        results = []
        previous = None
        for name in stages:
            path = os.path.join(model_dir, f"{name}.json")
            if os.path.exists(path):
                with open(path) as f:
                    result = json.load(f)
                logging.info("stage %s: done earlier (%s)", name, path)
            else:
                space_s = (
                    base.with_fixed({}, stage=name)
                    if name != "fine"
                    else base.fine_after(previous["values"])
                )
                stage = _Stage(space_s, data, strat, tgts, args, os.path.join(model_dir, name))
                result = stage.run(name, sigterm)
                result["values"] = _jsonable(result["values"])
                fileio.write_json(path, result)
            results.append(result)
            previous = result
        summary = _summary(args, data, results, tgts, ranges)
        fileio.write_json(os.path.join(model_dir, ARCHITECTURE_FILE), summary)
        record = build_record.make(
            None,
            architecture=summary["architecture"],
            build={"classes": int(data.num_classes)},
            input_size=[data.image_size, data.image_size],
            data=getattr(data, "spec", None),
        )
        build_record.write_run(model_dir, record)
        loop.RunArtifacts(model_dir, True, None).write_end(summary)
    return summary


def _summary(args, data, results, targets, ranges):
    """architecture.json: the last stage's result as a spec, its costs and the search's facts."""
    final = results[-1]
    arch = search_space.architecture_from_dict(final["architecture"])
    arch_dict = search_space.architecture_to_dict(arch)
    split, examples = reward_split(data)
    return {
        "space": args.space,
        "plan": args.plan,
        "architecture": arch_dict,
        "values": final["values"],
        "costs": final["costs"],
        "cost_ranges": {t.cost_model.name: list(r) for t, r in zip(targets, ranges)},
        "cost_models": {t.cost_model.name: _describe(t.cost_model) for t in targets},
        "macs": spec_costs.total_macs(arch, data.image_size, data.num_classes),
        "params": spec_costs.count_params(arch, data.num_classes),
        "input_size": data.image_size,
        "classes": int(data.num_classes),
        "reward_split": {"split": split, "examples": examples},
        "stages": [r["stage"] for r in results],
        "blocks": [
            [b["type"] if b["type"] != "UIB" else _uib_name(b) for b in s]
            for s in arch_dict["stages"]
        ],
    }


def _describe(cost_model):
    """A cost model's settings (ridge point, latency table, ...) as JSON, so that
    experiments.nas.analyze can rebuild it."""
    if dataclasses.is_dataclass(cost_model):
        return dataclasses.asdict(cost_model)
    try:
        path = gin.query_parameter("make_cost_model.latency_table")
    except ValueError:  # not bound in gin (a caller-made cost model)
        path = None
    table = getattr(cost_model, "table", {})
    return {
        "name": cost_model.name,
        "unit": cost_model.unit,
        "table": path,
        "device": table.get("device"),
    }


def _uib_name(b):
    return f"{search_space.specs.uib_kind(b['start_dw'], b['middle_dw'])}({b['start_dw']},{b['middle_dw']},e{b['expand']})"
