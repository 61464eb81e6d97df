"""TFLite export, graph analysis and the Appendix B benchmark protocol for MobileNetV4.

Modules: `export` (Keras -> .tflite INT8/FP16/FP32 + report), `calibration` (representative images),
`analysis` (op histogram, delegate partitions, fidelity), `runtime` (LiteRT interpreter helpers),
`cpu` (fastest-core detection and pinning), `benchmark` (Appendix B protocol, local or `--adb`),
`adb` (Android benchmark_model driver), `edgetpu` (edgetpu_compiler driver), `models` (name -> Keras
model, ours or Model Garden's; stand-in statistics for random weights), `compare_model_garden` and
`ablations` (latency tables for the docs), `roundtrip` (export-and-compare self-check),
`roofline_latency` (measured latency of the roofline zoo; the roofline itself is computed by
`mobilenetv4.roofline`).

Every entry point follows the package's one CLI convention (`mobilenetv4.cli`, docs/CONTRACT.md):
a user error is `ToolError` (= `mobilenetv4.cli.UserError`), printed as one `error: ...` line with
exit code 2 by `exit_on_tool_error` (= `mobilenetv4.cli.entry_point`). The old names stay as aliases.

This package imports no TensorFlow at import time so that `python -m tflite.benchmark` starts fast.
"""

from mobilenetv4.cli import UserError, entry_point

ToolError = UserError  # the name the tflite modules used before mobilenetv4.cli existed
exit_on_tool_error = entry_point

__all__ = ["ToolError", "UserError", "entry_point", "exit_on_tool_error"]
