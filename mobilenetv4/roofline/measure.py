"""Deprecated: latency measurement moved to the tools, `python -m tflite.roofline_latency`.

The model library computes costs; the tools measure. This alias stays for one release: it prints
one deprecation line and runs the new command with the same arguments (the old flag spellings are
accepted there too). It keeps this command's old default, `--attention_precision int8` (every op
quantized), where the new command defaults to float like `tflite.export`.

It starts the new command as a new program (`os.execv`), so the library still imports no tool.
"""
import os
import sys

NEW_MODULE = "tflite.roofline_latency"


def command(argv):
    """The new command line for old arguments `argv`."""
    argv = list(argv)
    if not any(a.split("=")[0] in ("--attention-precision", "--attention_precision") for a in argv):
        argv += ["--attention_precision", "int8"]
    return [sys.executable, "-m", NEW_MODULE, *argv]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    print(f"warning: python -m mobilenetv4.roofline.measure is deprecated and will be removed in the "
          f"next release; use python -m {NEW_MODULE}", file=sys.stderr, flush=True)
    cmd = command(argv)
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main()
