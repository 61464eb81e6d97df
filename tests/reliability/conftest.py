"""Shared setup of the reliability acceptance tests (issue 16): the helper modules beside this
file (hostile_files.py) and tests/cli_runner.py are importable by name."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
for path in (HERE, os.path.dirname(HERE)):
  if path not in sys.path:
    sys.path.insert(0, path)
