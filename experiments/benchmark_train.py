r"""Training-step throughput: our trainer vs Model Garden, interleaved.

  python -m experiments.benchmark_train [--batch_size=32 --image_size=224
      --rounds=5 --steps=5 --warmup=3]

A: experiments.trainer.make_train_step on mobilenetv4.create_model("conv_small").
B: Model Garden's ImageClassificationTask.train_step on its ClassificationModel
   with the MobileNetV4ConvSmall backbone (built by task.build_model()).
Both: float32, default strategy, the same AdamW (experiments.optim.adamw, BN and
bias excluded from decay, constant lr), label smoothing 0.1, 1000 classes, one
synthetic batch (reused; the input pipeline is not measured), `--steps` steps
per tf.function call as the trainer runs them. After `--warmup` untimed calls
each, rounds alternate A, B, B, A ... and each round times `--steps` steps;
the table gives the median images/s over rounds and the ratio A/B.
Starts through experiments.common_flags.run: a bad flag is one line, exit 2.
"""

import statistics
import time

from absl import flags

from experiments import common_flags
from mobilenetv4.cli import UserError

flags.DEFINE_integer("batch_size", 32, "Global batch.", lower_bound=1)
flags.DEFINE_integer("image_size", 224, "Input resolution.", lower_bound=32)
flags.DEFINE_integer("rounds", 5, "Timed rounds per contender.", lower_bound=1)
flags.DEFINE_integer("steps", 5, "Training steps per timed round.", lower_bound=1)
flags.DEFINE_integer("warmup", 3, "Untimed warm-up calls (tracing) each.", lower_bound=0)
FLAGS = flags.FLAGS


def _synthetic(batch, size, classes=1000, seed=0):
    import tensorflow as tf

    g = tf.random.Generator.from_seed(seed)
    images = g.normal([batch, size, size, 3])
    labels = g.uniform([batch], 0, classes, dtype=tf.int64)
    return images, labels


def ours(batch, size):
    """Returns run(n) doing n steps of our trainer's step."""
    import tensorflow as tf

    import mobilenetv4
    from experiments import optim, trainer

    strategy = tf.distribute.get_strategy()
    model = mobilenetv4.create_model("conv_small", input_shape=(size, size, 3), classes=1000)
    opt = optim.adamw(model, 1e-3, 0.01, 0.9, 0.999, 1e-7)
    images, labels = _synthetic(batch, size)
    ds = tf.data.Dataset.from_tensors((images, tf.one_hot(labels, 1000))).repeat()
    iterator = iter(strategy.experimental_distribute_dataset(ds))
    step = trainer.make_train_step(
        model, opt, trainer.categorical_crossentropy(label_smoothing=0.1), strategy, batch
    )
    return lambda n: step(iterator, tf.constant(n)).numpy(), model.count_params()


def model_garden(batch, size):
    """Returns run(n) doing n steps of Model Garden's classification train_step."""
    import official.vision  # noqa: F401  (registers experiment configs)
    import tensorflow as tf
    from official.core import exp_factory
    from official.vision.tasks import image_classification

    from experiments import optim

    cfg = exp_factory.get_exp_config("mobilenet_imagenet")
    cfg.task.model.backbone.mobilenet.model_id = "MobileNetV4ConvSmall"
    cfg.task.model.num_classes = 1000
    cfg.task.model.input_size = [size, size, 3]
    cfg.task.losses.label_smoothing = 0.1
    cfg.task.losses.l2_weight_decay = 0.0
    task = image_classification.ImageClassificationTask(cfg.task)
    model = task.build_model()
    opt = optim.adamw(model, 1e-3, 0.01, 0.9, 0.999, 1e-7)
    ds = tf.data.Dataset.from_tensors(_synthetic(batch, size)).repeat()
    iterator = iter(tf.distribute.get_strategy().experimental_distribute_dataset(ds))

    @tf.function
    def steps(it, n):
        loss = tf.constant(0.0)
        for _ in tf.range(n):
            loss = task.train_step(next(it), model, opt)["loss"]
        return loss

    return lambda n: steps(iterator, tf.constant(n)).numpy(), model.count_params()


def main(argv):
    del argv
    if common_flags.GIN_FILES.value or common_flags.GIN_PARAMS.value:
        # The contenders are fixed (conv_small, the trainer's step vs Model Garden's): nothing here
        # is gin-configurable, and a silently ignored --gin_file would mislead.
        raise UserError(
            "experiments.benchmark_train takes no --gin_file / --gin_param (it times a fixed "
            "conv_small step); use --batch_size, --image_size, --rounds, --steps, --warmup"
        )
    common_flags.split_cpu_if_asked()
    batch, size = FLAGS.batch_size, FLAGS.image_size
    contenders = {
        "ours (experiments.trainer)": ours(batch, size),
        "Model Garden (ClassificationModel)": model_garden(batch, size),
    }
    names = list(contenders)
    for name in names:
        print(f"warming up {name} ...", flush=True)
        for _ in range(FLAGS.warmup):
            contenders[name][0](FLAGS.steps)
    rates = {name: [] for name in names}
    for r in range(FLAGS.rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            start = time.perf_counter()
            contenders[name][0](FLAGS.steps)
            rates[name].append(FLAGS.steps * batch / (time.perf_counter() - start))
        print(
            f"round {r + 1}/{FLAGS.rounds}: "
            + ", ".join(f"{n.split()[0]} {rates[n][-1]:.1f} img/s" for n in names),
            flush=True,
        )
    print(
        f"\nconv_small @ {size}px, batch {batch}, float32, CPU; "
        f"{FLAGS.rounds} interleaved rounds x {FLAGS.steps} steps, median\n"
    )
    print("| trainer step | params | images/s (median) | min | max |")
    print("|---|---|---|---|---|")
    for name in names:
        print(
            f"| {name} | {contenders[name][1]:,} | "
            f"{statistics.median(rates[name]):.1f} | {min(rates[name]):.1f} | "
            f"{max(rates[name]):.1f} |"
        )
    ratio = statistics.median(rates[names[0]]) / statistics.median(rates[names[1]])
    per_round = [a / b for a, b in zip(rates[names[0]], rates[names[1]])]
    print(
        f"\nratio ours / Model Garden: {ratio:.2f}x of medians; median of "
        f"per-round ratios {statistics.median(per_round):.2f}x (per round: "
        + ", ".join(f"{x:.2f}" for x in per_round)
        + ")"
    )


if __name__ == "__main__":
    common_flags.run(main)
