"""Flags shared by every entry point under experiments/ (train, distill.generate).

absl flags are process-global and may be defined only once, and the tests import the trainer and
the distillation generator into one process, so the flags both take are defined here.
"""
from absl import flags
import tensorflow as tf

GIN_FILES = flags.DEFINE_multi_string("gin_file", [], "Gin files, applied in order.")
GIN_PARAMS = flags.DEFINE_multi_string(
    "gin_param", [], "Gin bindings applied after the files, e.g. \"train.epochs = 3\".")
CPU_DEVICES = flags.DEFINE_integer(
    "cpu_devices", None,
    "Split the CPU into this many logical devices (to try the mirrored strategy on one CPU).")


def split_cpu_if_asked():
  """Applies --cpu_devices; must run before TensorFlow initialises its devices."""
  if CPU_DEVICES.value:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * CPU_DEVICES.value)
