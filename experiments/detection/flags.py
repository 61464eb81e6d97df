"""The Model Garden experiment flags of the detection commands: which experiment, and its overrides.

Importing this module imports no TensorFlow, so `--help` and flag errors stay instant.
"""

from __future__ import annotations

EXPERIMENT_FLAGS = ("experiment", "config_file", "params_override")  # their argparse dests


def add_experiment_flags(parser, *, default: str | None = None) -> None:
    """Adds --experiment, --config_file (repeatable) and --params_override, spelled as in Model
    Garden's own drivers.

    Args:
      parser: a `mobilenetv4.cli.ArgumentParser`.
      default: the experiment when --experiment is not given; None makes the flag required.
    """
    parser.add_argument(
        "--experiment",
        required=default is None,
        default=default,
        help="a registered experiment" + (f" (default {default})" if default else ""),
    )
    parser.add_argument(
        "--config_file", action="append", default=[], help="YAML overrides, repeatable"
    )
    parser.add_argument("--params_override", default="", help="Model Garden's override string")


def load_experiment(args):
    """The experiment config the flags name (`detector.load_config`, no run-directory lock).

    Args:
      args: the parsed flags of `add_experiment_flags`.
    """
    from experiments.detection import detector  # pylint: disable=g-import-not-at-top

    return detector.load_config(args.experiment, args.config_file, args.params_override, lock=False)
