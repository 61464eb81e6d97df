"""The TuNAS search loop (paper Sec. 6.1): coarse then fine stage, or one stage.

`search(model_dir, ...)` is gin-configurable (experiments.nas.search is its CLI). Per stage:
a fresh supernet of the stage's space and a fresh controller; every step each replica samples its
own architecture, the shared weights take one step on a training batch with it, then the same
architecture is scored on a held-out batch (the data's eval split, never trained on):
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

import json
import os
import time
import types

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


def _write_json(path, obj):
    fileio.write_json(path, obj)


class _Stage:
    """One TuNAS stage: supernet, controller, optimiser, checkpoints and the step functions."""

    def __init__(self, space, data, strategy, targets, cfg, model_dir):
        self.space, self.data, self.strategy, self.targets = space, data, strategy, targets
        self.cfg = cfg
        self.replicas = strategy.num_replicas_in_sync
        self.global_batch = cfg["batch_size"] * self.replicas
        self.steps_per_epoch = data.steps_per_epoch(self.global_batch)
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
            schedule = optim.WarmupCosineDecay(cfg["learning_rate"], decay_steps=cfg["steps"])
            self.optimizer = keras.optimizers.Adam(schedule)
            self.optimizer.build(self.net.trainable_variables)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.controller = controller_lib.Controller(
            space.decisions, cfg["rl_learning_rate"], seed=cfg["seed"]
        )
        holder = tf.Module()
        holder.supernet, holder.controller, holder.step = self.net, self.controller, self.step
        state = types.SimpleNamespace(
            model=holder, optimizer=self.optimizer, rng_states=[], ema=None
        )
        self.checkpoints = loop.Checkpoints(state, model_dir, strategy, chief=True)
        self.writer = tf.summary.create_file_writer(model_dir)
        self._build_steps()

    def _build_steps(self):
        net, optimizer, strategy = self.net, self.optimizer, self.strategy
        global_batch = self.global_batch

        def train_fn(images, labels, indices):
            with tf.GradientTape() as tape:
                logits = net(images, indices, training=True)
                loss = (
                    tf.reduce_sum(
                        keras.losses.categorical_crossentropy(labels, logits, from_logits=True)
                    )
                    / global_batch
                )
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

        self.train_step, self.quality_step = train_step, quality_step

    def _per_replica(self, rows):
        rows = tf.constant(rows, tf.int32)
        return self.strategy.experimental_distribute_values_from_function(
            lambda ctx: rows[ctx.replica_id_in_sync_group]
        )

    def _local(self, value):
        return [float(v) for v in self.strategy.experimental_local_results(value)]

    def _train_iter(self, epoch, skip):
        bs = self.cfg["batch_size"]
        return iter(
            self.strategy.distribute_datasets_from_function(
                lambda ctx: self.data.train_dataset(ctx, bs, epoch, self.cfg["seed"], skip)
            )
        )

    def _val_iter(self):
        bs = self.cfg["batch_size"]
        n = max(1, self.data.num_eval_examples // (bs * self.replicas))
        return iter(
            self.strategy.distribute_datasets_from_function(
                lambda ctx: self.data.eval_dataset(ctx, bs, n).repeat()
            )
        )

    def costs(self, arch):
        return [t.cost_model(arch) for t in self.targets]

    def run(self, name, log_every, checkpoint_every, sigterm):
        cfg, space, steps = self.cfg, self.space, self.cfg["steps"]
        resumed = self.checkpoints.restore(self.step)
        step = int(self.step.numpy())
        if resumed:
            logging.info("stage %s: resumed at step %d from %s", name, step, resumed)
        epoch, skip = divmod(step, self.steps_per_epoch)
        train_it, val_it = self._train_iter(epoch, skip), self._val_iter()
        window = {
            "reward": [],
            "quality": [],
            "loss": [],
            **{f"cost/{t.cost_model.name}": [] for t in self.targets},
        }
        start = time.time()
        while step < steps:
            if sigterm.raised:
                self.checkpoints.save(step)
                raise loop.Preempted(f"SIGTERM at stage {name} step {step}; checkpoint saved")
            samples = self.controller.sample(self.replicas)
            rng = np.random.default_rng(cfg["seed"] * 1_000_003 + step)
            warm = _warm(rng, samples, space, step, steps, cfg["op_warmup"], cfg["filter_warmup"])
            try:
                batch = next(train_it)
            except StopIteration:
                epoch += 1
                train_it = self._train_iter(epoch, 0)
                batch = next(train_it)
            loss = self._local(self.train_step(batch, self._per_replica(warm)))
            quality = self._local(self.quality_step(next(val_it), self._per_replica(samples)))
            rewards = []
            for r in range(self.replicas):
                arch = space.decode(space.from_indices(samples[r]))
                c = self.costs(arch)
                rewards.append(
                    cost_models.absolute_reward(quality[r], c, self.targets, cfg["beta"])
                )
                for t, value in zip(self.targets, c):
                    window[f"cost/{t.cost_model.name}"].append(value)
            self.controller.update(samples, rewards, apply=step >= cfg["rl_delay"] * steps)
            window["reward"].extend(rewards)
            window["quality"].extend(quality)
            window["loss"].extend(loss)
            step += 1
            self.step.assign(step)
            if step % log_every == 0 or step == steps:
                self._log(name, step, steps, window, start)
                window = {k: [] for k in window}
            if step % checkpoint_every == 0 or step == steps:
                self.checkpoints.save(step)
        self.writer.flush()
        return self.result(name)

    def _log(self, name, step, steps, window, start):
        probs = self.controller.probabilities()
        best = self.space.decode(self.space.from_indices(self.controller.most_likely()))
        best_costs = self.costs(best)
        with self.writer.as_default(step=step):
            for key, values in window.items():
                if values:
                    tf.summary.scalar(key, float(np.mean(values)))
            for t, value in zip(self.targets, best_costs):
                tf.summary.scalar(f"most_likely/{t.cost_model.name}_over_target", value / t.value)
            tf.summary.scalar("baseline", float(self.controller.baseline.numpy()))
            for d in self.space.decisions:
                for choice, p in zip(d.choices, probs[d.name]):
                    tf.summary.scalar(f"controller/{d.name}/{choice}", float(p))
        rate = step / max(time.time() - start, 1e-6)
        costs = ", ".join(
            f"{t.cost_model.name} {v / t.value:.3f}x target"
            for t, v in zip(self.targets, best_costs)
        )
        logging.info(
            "stage %s step %d/%d: reward %.3f, accuracy %.3f, most likely: %s (%.1f steps/s)",
            name,
            step,
            steps,
            np.mean(window["reward"] or [0]),
            np.mean(window["quality"] or [0]),
            costs,
            rate,
        )

    def result(self, name):
        tolerance = self.cfg["tolerance"]
        if tolerance and name == "coarse":
            tolerance /= 2  # half the band: the fine stage keeps room on both sides (docs/nas.md)
        pick = cost_models.select_architecture(
            self.space,
            self.controller.log_probabilities(),
            self.targets,
            tolerance,
            seed=self.cfg["seed"],
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


def _jsonable(values):
    return {k: (v if not isinstance(v, np.generic) else v.item()) for k, v in values.items()}


@gin.configurable(denylist=["model_dir"])
def search(
    model_dir,
    data=gin.REQUIRED,
    space="quickstart",
    plan="two_stage",
    targets=None,
    beta=-0.1,
    fixed=None,
    expressive=False,
    steps_per_stage=300,
    batch_size=32,
    learning_rate=0.005,
    rl_learning_rate=0.05,
    rl_delay=0.25,
    op_warmup=0.25,
    filter_warmup=0.25,
    tolerance=None,
    strategy="default",
    tpu=None,
    seed=0,
    log_every_steps=50,
    checkpoint_every_steps=100,
):
    """Runs the search into `model_dir`; returns the summary dict.

    Args:
      model_dir: where checkpoints, TensorBoard logs and the results go (locked while running).
      data: a TrainingData (e.g. @input_pipeline): the supernet trains on its train split, the
        rewards come from its eval split.
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
      rl_delay: fraction of a stage before the controller learns.
      op_warmup: fraction of a stage with op warm-up.
      filter_warmup: fraction of a stage with filter warm-up.
      tolerance: a stage's result is the most likely architecture within this relative band of
        every target (cost_models.select_architecture); None: the argmax of every decision.
      strategy: tf.distribute strategy name (experiments.trainer.make_strategy).
      tpu: TPU address for strategy "tpu".
      seed: controller sampling and warm-up seed.
      log_every_steps: TensorBoard and log interval.
      checkpoint_every_steps: checkpoint interval.
    """
    if plan not in STAGE_PLANS:
        raise UserError(f"search.plan must be one of {', '.join(STAGE_PLANS)}, got {plan!r}")
    given = locals()
    for name, bounds in _BOUNDS.items():
        trainer_lib._check(f"search.{name}", given[name], **bounds)  # pylint: disable=protected-access
    if callable(data):  # `search.data = @input_pipeline`
        data = data()
    base = search_space.get(space, "one_stage", expressive=expressive)
    if fixed:
        base = base.with_fixed(dict(fixed))  # UserError for a decision that does not exist
    tgts = make_targets(targets, data.image_size, data.num_classes)
    stages = STAGE_PLANS[plan]
    first = base.with_fixed({}, stage=stages[0])
    ranges = cost_models.check_reachable(first, tgts)
    cfg = dict(
        steps=int(steps_per_stage),
        batch_size=int(batch_size),
        learning_rate=learning_rate,
        rl_learning_rate=rl_learning_rate,
        rl_delay=rl_delay,
        op_warmup=op_warmup,
        filter_warmup=filter_warmup,
        tolerance=tolerance,
        beta=beta,
        seed=seed,
    )
    strat = trainer_lib.make_strategy(strategy, tpu)
    with loop.run_lock(model_dir, True), loop._SigtermFlag() as sigterm:  # pylint: disable=protected-access
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
                stage = _Stage(space_s, data, strat, tgts, cfg, os.path.join(model_dir, name))
                result = stage.run(name, log_every_steps, checkpoint_every_steps, sigterm)
                result["values"] = _jsonable(result["values"])
                _write_json(path, result)
            results.append(result)
            previous = result
        final = results[-1]
        arch = search_space.architecture_from_dict(final["architecture"])
        arch_dict = search_space.architecture_to_dict(arch)
        summary = {
            "space": space,
            "plan": plan,
            "architecture": arch_dict,
            "values": final["values"],
            "costs": final["costs"],
            "cost_ranges": {t.cost_model.name: list(r) for t, r in zip(tgts, ranges)},
            "macs": spec_costs.total_macs(arch, data.image_size, data.num_classes),
            "params": spec_costs.count_params(arch, data.num_classes),
            "stages": [r["stage"] for r in results],
            "blocks": [
                [b["type"] if b["type"] != "UIB" else _uib_name(b) for b in s]
                for s in arch_dict["stages"]
            ],
        }
        _write_json(os.path.join(model_dir, ARCHITECTURE_FILE), summary)
        record = build_record.make(
            None,
            architecture=arch_dict,
            build={"classes": int(data.num_classes)},
            input_size=[data.image_size, data.image_size],
            data=getattr(data, "spec", None),
        )
        build_record.write_run(model_dir, record)
        loop.RunArtifacts(model_dir, True, None).write_end(summary)
    return summary


def _uib_name(b):
    return f"{search_space.specs.uib_kind(b['start_dw'], b['middle_dw'])}({b['start_dw']},{b['middle_dw']},e{b['expand']})"
