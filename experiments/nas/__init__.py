"""TuNAS over UIB (paper Sec. 6.1, Appendix A): cost models, supernet, controller, search CLI."""

import json

from mobilenetv4.cli import UserError


def read_json(path, what):
    """The JSON object in `path`; UserError naming `what` when unreadable or not JSON.

    Args:
      path: the file.
      what: how the error names it ("latency table", "architecture").
    """
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as e:
        raise UserError(f"cannot read {what} {path}: {e.strerror}") from None
    except ValueError:
        raise UserError(f"{what} {path} is not JSON") from None
