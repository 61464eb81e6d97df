"""Train / evaluate a detector with Model Garden's own train driver and our registrations.

    python -m experiments.detection.train --experiment retinanet_mobilenetv4_digits \
        --config_file data/digits_det/experiment.yaml --mode train_and_eval \
        --model_dir runs/det_digits [--params_override trainer.train_steps=1200]
    python -m experiments.detection.train --experiment retinanet_mobilenetv4_digits \
        --config_file data/digits_det/experiment.yaml --mode eval --model_dir runs/det_digits

Flags are Model Garden's (`official.vision.train`): --experiment, --config_file (repeatable YAML),
--params_override (YAML or a=b,c=d), --mode (train, eval, train_and_eval, ...), --model_dir. One
config system: Model Garden's experiment configs (no gin). Before Model Garden starts, this command
checks, with one `error: ...` line and exit 2 and without touching --model_dir: the experiment
name, every config field (strict), the backbone settings, and the data (every TFRecord readable,
class ids inside task.annotation_file's categories and below num_classes). The run directory is
locked for the job's life. Resume: run the same command again; Model Garden restores the newest
checkpoint in --model_dir (written every trainer.checkpoint_interval steps) and continues.
Evaluation results: Model Garden's COCO metrics (AP, AP50, ..., ARmax100) in the log and in
MODEL_DIR's summaries.
"""

from __future__ import annotations

import os

from absl import flags

from mobilenetv4.cli import UserError, run_absl
from official.common import flags as tfm_flags
from official.vision import train as mg_train  # defines --enable_async_checkpointing

import experiments.detection

FLAGS = flags.FLAGS
experiments.detection.register()  # run as `python -m`, the package import did not


def preflight(experiment, config_files, params_override, mode, model_dir):
    """Everything that can be checked before Model Garden runs; returns the parsed params."""
    from experiments.detection import data, detector
    from mobilenetv4 import fileio

    if not experiment:
        raise UserError("--experiment is required (e.g. retinanet_mobilenetv4_digits)")
    if not model_dir:
        raise UserError("--model_dir is required")
    if not mode:
        raise UserError("--mode is required (train, eval, train_and_eval, ...)")
    params = detector.load_config(experiment, config_files, params_override)
    if os.path.exists(model_dir) and not os.path.isdir(model_dir):
        raise UserError(f"--model_dir {model_dir} is a file; give a directory")
    training = "train" in mode
    evaluating = "eval" in mode or "validate" in mode
    data.check(params, train=training, evaluate=evaluating)
    if not training and not os.path.isdir(model_dir):
        raise UserError(
            f"--mode {mode}: --model_dir {model_dir} does not exist (nothing to evaluate)"
        )
    fileio.check_writable_dir(model_dir, flag="--model_dir")
    return params


def main(argv):
    from mobilenetv4 import fileio

    preflight(
        FLAGS.experiment,
        FLAGS.config_file or [],
        FLAGS.params_override,
        FLAGS.mode,
        FLAGS.model_dir,
    )
    with fileio.RunLock(FLAGS.model_dir):
        mg_train.main(argv)
    return 0


def run(argv=None):
    if "experiment" not in FLAGS:
        tfm_flags.define_flags()
    flags.adopt_module_key_flags(tfm_flags)  # --help lists Model Garden's flags as this job's
    run_absl(main, argv)


if __name__ == "__main__":
    run()
