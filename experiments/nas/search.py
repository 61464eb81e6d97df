r"""TuNAS over UIB (paper Sec. 6.1, Appendix A): python -m experiments.nas.search.

  python -m experiments.nas.search --gin_file=gin_configs/nas_quickstart.gin \
      --model_dir=/tmp/nas_quickstart
  python -m experiments.nas.search --gin_file=gin_configs/nas_quickstart.gin \
      --gin_param="search.plan = 'one_stage'" --model_dir=/tmp/nas_one_stage
  python -m experiments.nas.search --gin_file=gin_configs/nas_conv_small.gin \
      --gin_param="input_pipeline.tfds_manual_dir = '/data/imagenet_tars'" \
      --model_dir=gs://BUCKET/nas_conv_small --strategy=tpu --tpu=TPU_NAME

Rerunning the same command resumes from the newest checkpoint of the running stage (finished
stages are kept). A second job into a model_dir that a live job holds is refused.
Writes MODEL_DIR/architecture.json (the found network) and MODEL_DIR/build.json.
Exit codes: 0 done, 2 a user error (bad flag, gin binding, cost model, target, decision or
latency table; one line `error: ...`), 143 preempted (checkpoint saved).
"""

import json
import sys

from absl import flags
from absl import logging

from experiments import common_flags  # defines --gin_file, --gin_param, --cpu_devices
from mobilenetv4.cli import EXIT_PREEMPTED

flags.DEFINE_string("model_dir", None, "Where checkpoints, logs and architecture.json go.")
common_flags.define_strategy_flags("search")
flags.mark_flag_as_required("model_dir")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    logging.set_verbosity(logging.INFO)
    common_flags.split_cpu_if_asked()
    from experiments import loop
    from experiments import trainer  # noqa: F401  (registers input_pipeline)
    from experiments.nas import cost_models, model, tunas  # noqa: F401  (configurables)

    common_flags.parse_gin(FLAGS.gin_file, FLAGS.gin_param)
    try:
        summary = tunas.search(FLAGS.model_dir, **common_flags.strategy_overrides())
    except loop.Preempted as e:
        print(f"preempted: {e}", file=sys.stderr)
        return EXIT_PREEMPTED
    print(json.dumps({k: summary[k] for k in ("blocks", "costs", "macs", "params")}, indent=2))
    print(f"architecture: {FLAGS.model_dir}/architecture.json")
    print(f"analysis: python -m experiments.nas.analyze {FLAGS.model_dir}")
    return 0


if __name__ == "__main__":
    common_flags.run(main)
