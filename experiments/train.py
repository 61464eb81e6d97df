r"""Gin-configured training: python -m experiments.train.

  python -m experiments.train --gin_file=gin_configs/quickstart.gin \
      --model_dir=/tmp/mnv4_quickstart
  python -m experiments.train --gin_file=gin_configs/conv_small.gin \
      --gin_param="input_pipeline.tfds_manual_dir='/data/imagenet'" \
      --model_dir=gs://bucket/conv_small --strategy=tpu --tpu=my-tpu

Rerunning the same command resumes from the newest checkpoint in model_dir.
Exit codes: 0 done, 2 configuration/data error, 143 preempted (checkpoint saved).
"""
import json
import os
import sys

from absl import app
from absl import flags
from absl import logging

from experiments import common_flags  # defines --gin_file, --gin_param, --cpu_devices

flags.DEFINE_string("model_dir", None, "Where checkpoints, TensorBoard logs, "
                    "final.weights.h5 and metrics.json go.")
flags.DEFINE_enum("strategy", None, ["default", "mirrored", "multi_worker",
                                     "tpu"],
                  "tf.distribute strategy (overrides train.strategy).")
flags.DEFINE_string("tpu", None, "TPU name or address for --strategy=tpu.")
flags.mark_flag_as_required("model_dir")
FLAGS = flags.FLAGS


def parse_gin(gin_files, gin_params):
  """Parses gin files and bindings; a bad one raises ValueError naming it."""
  import gin
  from experiments import trainer  # noqa: F401  (registers configurables)
  for path in gin_files:
    if not os.path.exists(path):
      raise ValueError(f"gin file '{path}' does not exist")
  try:
    gin.parse_config_files_and_bindings(gin_files, gin_params,
                                        finalize_config=False)
  except (ValueError, KeyError, ImportError, SyntaxError) as e:
    msg = [line.strip() for line in str(e).strip().splitlines()]
    raise ValueError(f"bad gin configuration: {msg[0]} ({'; '.join(msg[1:3])})"
                     ) from None


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  import tensorflow as tf
  common_flags.split_cpu_if_asked()
  import gin
  from experiments import data as data_lib
  from experiments import trainer
  try:
    parse_gin(FLAGS.gin_file, FLAGS.gin_param)
    overrides = {}
    if FLAGS.strategy:
      overrides["strategy"] = FLAGS.strategy
    if FLAGS.tpu:
      overrides["tpu"] = FLAGS.tpu
    results = trainer.train(FLAGS.model_dir, **overrides)
  except (ValueError, data_lib.DataError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  except trainer.Preempted as e:
    print(f"preempted: {e}", file=sys.stderr)
    return 143
  os.makedirs(FLAGS.model_dir, exist_ok=True)
  with open(os.path.join(FLAGS.model_dir, "operative_config.gin"), "w") as f:
    f.write(gin.operative_config_str())
  print(json.dumps(results, indent=2))
  print(f"checkpoints: {os.path.join(FLAGS.model_dir, 'checkpoints')}\n"
        f"TensorBoard: tensorboard --logdir {FLAGS.model_dir}\n"
        f"weights: {results.get('weights')}\n"
        f"metrics: {os.path.join(FLAGS.model_dir, 'metrics.json')}")
  return 0


if __name__ == "__main__":
  app.run(lambda argv: sys.exit(main(argv)))
