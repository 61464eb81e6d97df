"""TFLite export, graph analysis and the Appendix B benchmark protocol for MobileNetV4.

Modules: `export` (Keras -> .tflite INT8/FP16/FP32 + report), `calibration` (representative images),
`analysis` (op histogram, delegate partitions, fidelity), `runtime` (LiteRT interpreter helpers),
`cpu` (fastest-core detection and pinning), `benchmark` (Appendix B protocol, local or `--adb`),
`adb` (Android benchmark_model driver), `edgetpu` (edgetpu_compiler driver), `models` (name -> Keras
model, ours or Model Garden's; stand-in statistics for random weights), `compare_model_garden` and
`ablations` (latency tables for the docs), `roundtrip` (export-and-compare self-check).

This package imports no TensorFlow at import time so that `python -m tflite.benchmark` starts fast.
"""
import functools
import sys


class ToolError(Exception):
    """A user-facing error: the message says what was wrong and what to do."""


def exit_on_tool_error(main):
    """Wraps a CLI entry point: a ToolError prints `error: ...` and exits 2, no traceback."""

    @functools.wraps(main)
    def wrapped(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except ToolError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    return wrapped
