"""The one command-line convention of every `python -m ...` entry point (docs/CONTRACT.md).

- Flags are spelled `--lower_snake_case`; a documented older spelling stays as a hidden alias for one
  release and prints one deprecation line when used (`add_alias`).
- A list is one flag with comma-separated items: `--models conv_small,conv_medium` (`comma_list`).
  Input files that a tool works through may be positional (`tflite.benchmark a.tflite b.tflite`).
- `--output FILE` names a file, `--output_dir DIR` a directory. An existing output is refused unless
  `--overwrite` is given, and an output may never be one of the same run's inputs (`fileio`).
- The Appendix B protocol flags are the same everywhere (`add_protocol_flags`, `protocol_options`);
  so are `--models` (`add_models_flag`) and the outputs (`add_output_flags`). A numeric flag's help
  states its default from the value (`add_number_flag`).
- Exit codes: 0 done; 1 the job ran and its check failed; 2 a user error, reported as one line
  `error: ...` on stderr with no traceback; 143 preempted (the trainers, after a checkpoint).

This module imports no TensorFlow, so `--help` and flag errors are instant.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
from typing import Callable, Sequence

EXIT_OK, EXIT_CHECK_FAILED, EXIT_USER_ERROR, EXIT_PREEMPTED = 0, 1, 2, 143


class UserError(ValueError):
    """A user-facing error: one line that names the problem and what to do (exit code 2)."""


def fail(message: str) -> None:
    """Prints `error: message` (first line only) to stderr and exits 2."""
    line = " ".join(str(message).split("\n")[0].split()) or "invalid input"
    print(f"error: {line}", file=sys.stderr)
    sys.exit(EXIT_USER_ERROR)


def entry_point(main: Callable) -> Callable:
    """Wraps a CLI `main`: a UserError becomes `error: ...` and exit 2; an int result is the exit
    code; None or a truthy non-int result is success."""

    @functools.wraps(main)
    def wrapped(*args, **kwargs):
        try:
            result = main(*args, **kwargs)
        except UserError as e:
            fail(str(e))
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)
        return result

    return wrapped


def exit_code(result) -> int:
    """The process exit code for what an entry point's main returned."""
    if isinstance(result, bool) or result is None:
        return EXIT_OK if result is not False else EXIT_CHECK_FAILED
    if isinstance(result, int):
        return result
    return EXIT_OK


def run(main: Callable, argv: Sequence[str] | None = None) -> None:
    """`sys.exit(exit_code(entry_point(main)(argv)))`: the last line of every argparse module."""
    sys.exit(exit_code(entry_point(main)(argv)))


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the package's conventions: a bad flag is one `error:` line and exit 2."""

    def __init__(self, prog: str, description: str | None = None, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(prog=prog, description=description, **kwargs)
        self._aliases: dict[str, str] = {}

    def error(self, message):  # argparse calls this for every parse error
        fail(f"{message} (see {self.prog} --help)")

    def add_alias(self, old: str, new: str) -> None:
        """Accepts `old` (a documented former spelling) for `new`, with a deprecation line."""
        self._aliases[old] = new

    def parse_args(self, args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        rewritten = []
        for arg in args:
            flag, eq, value = arg.partition("=")
            if flag in self._aliases:
                new = self._aliases[flag]
                print(
                    f"warning: {flag} is deprecated and will be removed in the next release; "
                    f"use {new}",
                    file=sys.stderr,
                )
                arg = new + eq + value
            rewritten.append(arg)
        return super().parse_args(rewritten, namespace)


def comma_list(text: str) -> list[str]:
    """argparse `type=` for the package's list syntax: `a,b,c` (empty items dropped)."""
    items = [item.strip() for item in str(text).split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list such as a,b")
    return items


class CommaList(argparse.Action):
    """`--flag a,b` (the package's list syntax); the older space-separated `--flag a b` is still
    accepted for one release, with a deprecation line."""

    def __init__(self, option_strings, dest, **kwargs):
        kwargs.setdefault("nargs", "+")
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        if len(values) > 1:
            print(
                f"warning: space-separated values for {option_string} are deprecated and will "
                f"be removed in the next release; use {option_string} {','.join(values)}",
                file=sys.stderr,
            )
        try:
            items = [item for value in values for item in comma_list(value)]
        except argparse.ArgumentTypeError as e:
            parser.error(f"argument {option_string}: {e}")
        setattr(namespace, self.dest, items)


def add_models_flag(parser, help: str, *, default: Sequence[str] | None = None) -> None:
    """`--models a,b`: the models a tool works through; required unless it has a default.

    Args:
      parser: an ArgumentParser.
      help: what the names are (", e.g. ..." or the choices); the default is appended.
      default: the names when the flag is not given; None makes --models required. These tools
        once took the names space-separated, which still works for one release (`CommaList`).
    """
    if default is None:
        parser.add_argument("--models", required=True, type=comma_list, help=help)
    else:
        default = list(default)
        help = f"{help} (default {','.join(default)})"
        parser.add_argument("--models", action=CommaList, default=default, help=help)


def _int_at_least(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse `type=`: an integer >= 1."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """argparse `type=`: an integer >= 0."""
    return _int_at_least(text, 0)


def finite_float(text: str) -> float:
    """argparse `type=`: a finite float (NaN and inf are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def positive_float(text: str) -> float:
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def core_choice(text: str):
    """`--core`: fastest | none | a CPU index."""
    if text in ("fastest", "none"):
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 'fastest', 'none' or a CPU index, got {text!r}"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"a CPU index is 0 or more, got {value}")
    return value


def add_number_flag(
    parser, flag: str, default, help: str, *, type: Callable = positive_int
) -> None:
    """A numeric flag whose help ends with its default, so the two never disagree.

    Args:
      parser: an ArgumentParser or an argument group.
      flag: the flag, e.g. "--num_runs".
      default: its value when not given (an int or a float).
      help: what it is; " (default N)" is appended.
      type: the argparse type that parses and bounds it (default `positive_int`).
    """
    parser.add_argument(flag, type=type, default=default, help=f"{help} (default {default:g})")


def add_protocol_flags(
    parser: argparse.ArgumentParser, *, num_runs: int = 1000, repeats: int = 5
) -> None:
    """The Appendix B protocol flags, spelled and defaulted the same in every tool."""
    g = parser.add_argument_group("benchmark protocol (paper Appendix B)")
    add_number_flag(g, "--num_runs", num_runs, "invocations per mean")
    add_number_flag(g, "--repeats", repeats, "means per model; the median is reported")
    add_number_flag(g, "--warmup_runs", 20, "untimed invocations first", type=non_negative_int)
    add_number_flag(g, "--num_threads", 1, "CPU threads")
    g.add_argument(
        "--core",
        type=core_choice,
        default="fastest",
        help="pin to this CPU index, 'fastest' (default) or 'none'",
    )


PROTOCOL_FLAGS = ("num_runs", "repeats", "warmup_runs", "num_threads", "core")


def protocol_options(args) -> dict:
    """The protocol flags' values by name (`add_protocol_flags`), as keyword arguments for
    `tflite.benchmark.appendix_b` and the tools built on it."""
    return {name: getattr(args, name) for name in PROTOCOL_FLAGS}


def add_output_flags(
    parser: argparse.ArgumentParser,
    *,
    kind: str = "file",
    required: bool = False,
    default: str | None = None,
    help: str = "",
) -> None:
    """`--output FILE` (kind='file') or `--output_dir DIR` (kind='dir'), plus `--overwrite`."""
    name = "--output" if kind == "file" else "--output_dir"
    parser.add_argument(name, required=required, default=default, help=help)
    parser.add_argument(
        "--overwrite", action="store_true", help="replace existing output files (refused otherwise)"
    )


_ABSL_HELP_FLAGS = ("-h", "-?", "--help", "--helpshort", "--helpfull", "--helpxml")


def absl_flags_parser(argv):
    """absl's flag parsing with this convention: a bad flag is one `error:` line and exit 2, and
    asking for help exits 0 (absl's help flags exit 1)."""
    from absl import flags  # pylint: disable=g-import-not-at-top

    wants_help = any(arg.split("=")[0] in _ABSL_HELP_FLAGS for arg in argv[1:])
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        fail(f"{e} (see {argv[0].rsplit('/', 1)[-1]} --help)")
    except SystemExit:
        if wants_help:
            sys.exit(EXIT_OK)
        raise


def run_absl(main: Callable, argv: Sequence[str] | None = None) -> None:
    """absl's app.run for the absl/gin jobs: main(argv) may return an exit code; a UserError is
    `error: ...` and exit 2; positional arguments are refused (flags are --name=value)."""
    from absl import app  # pylint: disable=g-import-not-at-top

    def wrapped(args):
        if len(args) > 1:
            fail(f"unexpected arguments {args[1:]}; flags are written --name=value")
        try:
            result = main(args)
        except UserError as e:
            fail(str(e))
        sys.exit(exit_code(result))

    app.run(wrapped, argv=argv, flags_parser=absl_flags_parser)
