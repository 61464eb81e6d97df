"""Deprecated: latency measurement moved to the tools, `python -m tflite.roofline_latency`.

The model library computes costs; the tools measure. This alias stays for one release: it runs the
new command with the same arguments (the old flag spellings are accepted there too), which prints
one deprecation line naming it once the arguments parse (a bad flag stays one `error:` line). It keeps this command's old default, `--attention_precision int8` (every op
quantized), where the new command defaults to float like `tflite.export`.

It starts the new command as a new program (`os.execv`), so the library still imports no tool.
"""

import os
import sys

NEW_MODULE = "tflite.roofline_latency"
OLD_COMMAND = "python -m mobilenetv4.roofline.measure"
ALIAS_ENV = "MOBILENETV4_DEPRECATED_COMMAND"  # read by the new command to print the deprecation


def command(argv):
    """The new command line for old arguments `argv`."""
    argv = list(argv)
    if not any(a.split("=")[0] in ("--attention-precision", "--attention_precision") for a in argv):
        argv += ["--attention_precision", "int8"]
    return [sys.executable, "-m", NEW_MODULE, *argv]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    cmd = command(argv)
    os.environ[ALIAS_ENV] = OLD_COMMAND
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main()
