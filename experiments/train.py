r"""Gin-configured training: python -m experiments.train.

  python -m experiments.train --gin_file=gin_configs/quickstart.gin \
      --model_dir=/tmp/mnv4_quickstart
  python -m experiments.train --gin_file=gin_configs/conv_small.gin \
      --gin_param="input_pipeline.tfds_manual_dir='/data/imagenet'" \
      --model_dir=gs://bucket/conv_small --strategy=tpu --tpu=my-tpu

Rerunning the same command resumes from the newest checkpoint in model_dir.
A second job into a model_dir that a live job holds is refused.
Exit codes: 0 done, 2 a user error (bad flag, gin binding, hyper-parameter,
data, or model_dir; one line `error: ...`), 143 preempted (checkpoint saved).
"""

import json
import os
import sys

from absl import flags
from absl import logging

from mobilenetv4.cli import EXIT_PREEMPTED
from experiments import common_flags  # defines --gin_file, --gin_param, --cpu_devices

flags.DEFINE_string(
    "model_dir",
    None,
    "Where checkpoints, TensorBoard logs, build.json, final.weights.h5 and metrics.json go.",
)
common_flags.define_strategy_flags("train")
flags.mark_flag_as_required("model_dir")
FLAGS = flags.FLAGS


def parse_gin(gin_files, gin_params):
    """Registers the trainer's configurables, then parses gin files and bindings;
    a bad one raises UserError (a ValueError) naming it."""
    from experiments import trainer  # noqa: F401  (registers configurables)

    common_flags.parse_gin(gin_files, gin_params)


def main(argv):
    del argv
    logging.set_verbosity(logging.INFO)
    common_flags.split_cpu_if_asked()
    from experiments import trainer

    parse_gin(FLAGS.gin_file, FLAGS.gin_param)
    try:
        results = trainer.train(FLAGS.model_dir, **common_flags.strategy_overrides())
    except trainer.Preempted as e:
        print(f"preempted: {e}", file=sys.stderr)
        return EXIT_PREEMPTED
    print(json.dumps(results, indent=2))
    if results.get("chief", True):
        print(
            f"checkpoints: {os.path.join(FLAGS.model_dir, 'checkpoints')}\n"
            f"TensorBoard: tensorboard --logdir {FLAGS.model_dir}\n"
            f"build record: {results.get('build_record')}\n"
            f"weights: {results.get('weights')}\n"
            f"metrics: {os.path.join(FLAGS.model_dir, 'metrics.json')}"
        )
    return 0


if __name__ == "__main__":
    common_flags.run(main)
