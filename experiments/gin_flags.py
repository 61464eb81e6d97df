"""The --gin_file / --gin_param flags, shared by every entry point under experiments/.

absl flags are process-global and may be defined only once, so the trainer and the distillation
generator (which tests import into one process) both take them from here.
"""
from absl import flags

GIN_FILES = flags.DEFINE_multi_string("gin_file", [], "Gin files, applied in order.")
GIN_PARAMS = flags.DEFINE_multi_string(
    "gin_param", [], "Gin bindings applied after the files, e.g. \"train.epochs = 3\".")
