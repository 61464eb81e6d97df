"""Flags and the entry helper shared by the gin-driven jobs (train, distill.generate, nas.search).

absl flags are process-global and may be defined only once, and the tests import the trainer and
the distillation generator into one process, so the flags they share are defined here. `run` is
the one way these jobs start: the package's CLI convention (docs/CONTRACT.md) on top of absl: a bad
flag, a bad gin file or binding, or any `UserError` is one `error: ...` line and exit 2.
"""

import os

from absl import flags

from mobilenetv4.cli import EXIT_USER_ERROR, UserError, run_absl

GIN_FILES = flags.DEFINE_multi_string("gin_file", [], "Gin files, applied in order.")
GIN_PARAMS = flags.DEFINE_multi_string(
    "gin_param", [], "Gin bindings applied after the files, e.g. \"train.epochs = 3\"."
)
CPU_DEVICES = flags.DEFINE_integer(
    "cpu_devices",
    None,
    "Split the CPU into this many logical devices (to try the mirrored strategy on one CPU).",
    lower_bound=1,
)


def define_strategy_flags(job):
    """Defines --strategy and --tpu (once per process) for a gin job whose `JOB.strategy` and
    `JOB.tpu` bindings they override (experiments.train: "train", experiments.nas.search: "search")."""
    if "strategy" in flags.FLAGS:
        return
    flags.DEFINE_enum(
        "strategy",
        None,
        ["default", "mirrored", "multi_worker", "tpu"],
        f"tf.distribute strategy (overrides {job}.strategy); "
        "multi_worker reads the cluster from TF_CONFIG.",
    )
    flags.DEFINE_string("tpu", None, "TPU name or address for --strategy=tpu.")


def strategy_overrides():
    """{"strategy": ..., "tpu": ...}: the --strategy / --tpu flags that were given."""
    return {
        name: flags.FLAGS[name].value for name in ("strategy", "tpu") if flags.FLAGS[name].value
    }


def split_cpu_if_asked():
    """Applies --cpu_devices; must run before TensorFlow initialises its devices."""
    if CPU_DEVICES.value:
        import tensorflow as tf  # pylint: disable=g-import-not-at-top

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * CPU_DEVICES.value
        )


def parse_gin(gin_files, gin_params, finalize=False):
    """Parses gin files and bindings; a missing file or a bad binding is a UserError naming it."""
    import gin  # pylint: disable=g-import-not-at-top

    for path in gin_files:
        if not os.path.isfile(path):
            raise UserError(f"gin file '{path}' does not exist")
    try:
        gin.parse_config_files_and_bindings(gin_files, gin_params, finalize_config=finalize)
    except (ValueError, KeyError, ImportError, SyntaxError, NameError) as e:
        msg = [line.strip() for line in str(e).strip().splitlines() if line.strip()] or ["?"]
        raise UserError(
            f"bad gin configuration: {msg[0]}"
            + (f" ({'; '.join(msg[1:3])})" if len(msg) > 1 else "")
        ) from None


def run(main):
    """The jobs' entry: `mobilenetv4.cli.run_absl` (exit 2 + one line for a bad flag, gin file or
    binding, or any UserError; --help exits 0)."""
    run_absl(main)


__all__ = [
    "CPU_DEVICES",
    "EXIT_USER_ERROR",
    "GIN_FILES",
    "GIN_PARAMS",
    "define_strategy_flags",
    "parse_gin",
    "run",
    "split_cpu_if_asked",
    "strategy_overrides",
]
