"""Shared setup of the reliability acceptance tests (issue 16): makes the helper modules
importable by name in the test modules: hostile_files.py (beside this file) and tests/cli_runner.py
(loaded by path: tests/ itself must not go on sys.path, where tests/tflite, tests/mobilenetv4 and
tests/experiments would shadow the real packages as namespace packages)."""

import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:  # holds no folder named like a package
    sys.path.insert(0, HERE)
if "cli_runner" not in sys.modules:
    _spec = importlib.util.spec_from_file_location(
        "cli_runner", os.path.join(os.path.dirname(HERE), "cli_runner.py")
    )
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["cli_runner"] = _module
    _spec.loader.exec_module(_module)
