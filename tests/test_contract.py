"""The command-line contract (docs/CONTRACT.md section 3) for every entry point, and docs that
cannot drift from the parsers (issue 12 acceptance).

- Entry points are discovered by scanning mobilenetv4/, experiments/, tflite/ and scripts/ for an
  `if __name__ == "__main__"` block or a `__main__.py`, so a new tool is covered automatically.
- Each one: `--help` exits 0 and every flag it lists is `--lower_snake_case` (`-h` allowed;
  documented aliases are hidden from help); `--no_such_flag` exits 2 with exactly one non-empty
  stderr line, starting `error:`.
- Every `python -m MODULE ...` command quoted in README.md and docs/*.md (code blocks and inline
  code) names a discovered entry point, and every `--flag` it uses is listed by that module's help
  or is an alias the parser accepts (probed with `MODULE --help FLAG...`: the alias rewriting of
  `mobilenetv4.cli.ArgumentParser` prints `warning: FLAG is deprecated` before `--help` exits).

Each help call imports the tool (TensorFlow where the tool imports it at module level), so the
commands run through tests/cli_runner.py (forked from an interpreter that imported TensorFlow once,
two at a time) and each test process caches the results for the tests after it.
"""

import functools
import os
import re
import sys


def _load_cli_runner():
    """tests/cli_runner.py, loaded by path: tests/ itself must not go on sys.path (tests/tflite etc.
    would shadow the real packages as namespace packages)."""
    import importlib.util

    if "cli_runner" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "cli_runner", os.path.join(os.path.dirname(os.path.abspath(__file__)), "cli_runner.py")
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["cli_runner"] = module
        spec.loader.exec_module(module)
    return sys.modules["cli_runner"]


cli_runner = _load_cli_runner()

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("mobilenetv4", "experiments", "tflite")
SCRIPTS = "scripts"
DOCS = ["README.md"] + sorted(
    os.path.join("docs", f) for f in os.listdir(os.path.join(REPO, "docs")) if f.endswith(".md")
)
SNAKE_FLAG = re.compile(r"^--[a-z0-9]+(_[a-z0-9]+)*$")
MAIN_BLOCK = re.compile(r"""^if\s+__name__\s*==\s*['"]__main__['"]\s*:""", re.MULTILINE)
TIMEOUT = 300  # one help call; they normally take a few seconds
BOGUS = "--no_such_flag"


@functools.cache
def entry_points():
    """{name: argv prefix}: `python -m pkg.mod` for package modules, `python scripts/x.py` for
    scripts. Discovered from the files, sorted by name."""
    found = {}
    for package in PACKAGES:
        for root, dirs, files in os.walk(os.path.join(REPO, package)):
            dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__pycache__")))
            for f in sorted(files):
                if not f.endswith(".py"):
                    continue
                path = os.path.join(root, f)
                rel = os.path.relpath(path, REPO)[:-3].split(os.sep)
                if f == "__main__.py":
                    module = ".".join(rel[:-1])
                else:
                    with open(path, encoding="utf-8") as fh:
                        if not MAIN_BLOCK.search(fh.read()):
                            continue
                    module = ".".join(rel)
                found[module] = ("-m", module)
    scripts = os.path.join(REPO, SCRIPTS)
    if os.path.isdir(scripts):
        for f in sorted(os.listdir(scripts)):
            path = os.path.join(scripts, f)
            if f.endswith(".py"):
                with open(path, encoding="utf-8") as fh:
                    if MAIN_BLOCK.search(fh.read()):
                        found[f"{SCRIPTS}/{f}"] = (path,)
    return dict(sorted(found.items()))


_CACHE = {}


def _run_all(argvs):
    """Runs the argvs through cli_runner (a zygote with TensorFlow imported forks each command, two
    at a time), each once per test process; returns {argv: (exit code, stdout, stderr)}."""
    argvs = list(dict.fromkeys(argvs))
    todo = [a for a in argvs if a not in _CACHE]
    for argv, result in zip(todo, cli_runner.run_all(todo, timeout=TIMEOUT)):
        _CACHE[argv] = tuple(result)[:3]
    return {a: _CACHE[a] for a in argvs}


def _is_absl(help_text):
    return "--helpfull" in help_text


def _stderr_lines(stderr):
    return cli_runner.error_lines(stderr)


def listed_flags(help_text):
    """Option strings a help text lists: argparse's option lines (indented two spaces, after the
    first 'options:'-style section header) or absl's `  --name:` / `  --[no]name:` lines."""
    flags = []
    if _is_absl(help_text):
        # after absl's "flags:" header (the usage text above it may quote commands); a listed flag is
        # `  --name: help` or `  --[no]name: help`
        listing = help_text.split("\nflags:\n", 1)[-1]
        for m in re.finditer(r"^\s+(--(?:\[no\])?[^\s:=]+):(?:\s|$)", listing, re.MULTILINE):
            flags.append(m.group(1).replace("[no]", ""))
        return flags
    in_sections = False
    for line in help_text.splitlines():
        if re.match(r"^[A-Za-z][\w ()/,'-]*:\s*$", line):
            in_sections = True
            continue
        if not in_sections:
            continue
        m = re.match(r"^  (-\S.*?)(?:\s{2,}|$)", line)
        if not m:
            continue
        for part in m.group(1).split(", "):
            token = part.split()[0] if part.split() else ""
            if token.startswith("-"):
                flags.append(token)
    return flags


def bad_spellings(flags):
    return sorted({f for f in flags if f != "-h" and not SNAKE_FLAG.match(f)})


def test_entry_points_are_discovered():
    """The scan finds the tools the README names (a broken scan would make the tests below vacuous)."""
    names = entry_points()
    for expected in (
        "experiments.train",
        "experiments.distill.generate",
        "tflite.export",
        "tflite.benchmark",
        "mobilenetv4.convert",
        "mobilenetv4.summary",
        "mobilenetv4.roofline",
    ):
        assert expected in names, f"{expected} not discovered among {sorted(names)}"
    assert len(names) >= 12, sorted(names)


def test_help_exits_0_and_lists_only_snake_case_flags():
    names = entry_points()
    results = _run_all(argv + ("--help",) for argv in names.values())
    problems = []
    for name, argv in names.items():
        code, out, err = results[argv + ("--help",)]
        if code != 0:
            problems.append(
                f"{name} --help: exit {code} (expected 0); stderr tail: "
                f"{_stderr_lines(err)[-1:] or ''}"
            )
            continue
        flags = listed_flags(out)
        if not flags:
            problems.append(f"{name} --help: no flags found in the help text (is it on stdout?)")
            continue
        bad = bad_spellings(flags)
        if bad:
            problems.append(f"{name} --help lists flags that are not --lower_snake_case: {bad}")
    assert not problems, "\n".join(problems)


def test_unknown_flag_is_one_error_line_and_exit_2():
    names = entry_points()
    results = _run_all(argv + (BOGUS,) for argv in names.values())
    problems = []
    for name, argv in names.items():
        code, _, err = results[argv + (BOGUS,)]
        lines = _stderr_lines(err)
        if code != 2:
            problems.append(f"{name} {BOGUS}: exit {code} (expected 2); stderr: {lines[-3:]}")
        elif len(lines) != 1 or not lines[0].startswith("error:"):
            problems.append(
                f"{name} {BOGUS}: expected one stderr line 'error: ...', got "
                f"{len(lines)}: {lines[:4]}"
            )
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------------------------
# Docs cannot drift.

COMMAND = re.compile(r"\bpython3?\s+-m\s+([A-Za-z_][\w.]*)(\*?)(.*)")


def _logical_lines(text):
    """(line number, text, in_code) with backslash continuations joined; in_code for fenced blocks
    and for lines that start with a command (indented code blocks, shell prompts)."""
    lines = text.splitlines()
    fenced = False
    i = 0
    while i < len(lines):
        start = i
        line = lines[i]
        if line.lstrip().startswith("```"):
            fenced = not fenced
            i += 1
            continue
        while line.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            line = line.rstrip()[:-1] + " " + lines[i].strip()
        i += 1
        stripped = line.lstrip().lstrip("$ ")
        yield start + 1, line, fenced or stripped.startswith(("python -m", "python3 -m"))


def documented_commands(docs=None):
    """[(where, module, [flags])] for every `python -m MODULE ...` in README.md and docs/*.md (or
    `docs`, paths relative to the repository) whose module is in this repository's packages."""
    commands = []
    for doc in DOCS if docs is None else docs:
        with open(os.path.join(REPO, doc), encoding="utf-8") as f:
            text = f.read()
        for lineno, line, in_code in _logical_lines(text):
            if in_code:
                pieces = [line.split(" #")[0] if not line.lstrip().startswith("#") else ""]
            else:
                pieces = re.findall(r"`([^`]+)`", line)
            for piece in pieces:
                for m in COMMAND.finditer(piece):
                    module, star, rest = m.group(1).rstrip("."), m.group(2), m.group(3)
                    if star or module.split(".")[0] not in PACKAGES + (SCRIPTS,):  # `experiments.*`
                        continue
                    rest = re.split(r"\s(?:\||&&|;|>)\s|\bpython3?\s+-m\s", rest)[0]
                    flags = []
                    for token in rest.split():
                        token = token.lstrip("[(")
                        if not token.startswith("--") or token == "--":
                            continue
                        flag = re.split(r"[=\])|,]", token)[0]
                        if flag != "--" and flag not in flags:
                            flags.append(flag)
                    commands.append((f"{doc}:{lineno}", module, flags))
    return commands


def _accepted_flags(help_text, full_help_text):
    """The flags a help text lists; for absl jobs the --helpfull text's too (shared and absl's own
    flags count), plus --noFLAG for booleans."""
    flags = set(listed_flags(help_text))
    if _is_absl(help_text):
        flags |= set(listed_flags(full_help_text))
        flags |= {
            f"--no{b}" for b in re.findall(r"^\s+--\[no\]([^\s:]+):", full_help_text, re.MULTILINE)
        }
    return flags


def test_documented_commands_name_entry_points_and_accepted_flags():
    commands = documented_commands()
    assert commands, "no `python -m` commands found in README.md and docs/*.md"
    names = entry_points()
    modules = sorted({m for _, m, _ in commands if m in names})
    helps = {
        m: r[1] for m, r in zip(modules, _run_all(names[m] + ("--help",) for m in modules).values())
    }
    # absl jobs: --helpfull lists every flag. argparse tools: a documented flag missing from the
    # help may be an alias, so it is probed once per module (`--help FLAG...`).
    extra = {}
    for m in modules:
        if _is_absl(helps[m]):
            extra[m] = names[m] + ("--helpfull",)
    unknown = {}
    for _, module, flags in commands:
        if module in helps and not _is_absl(helps[module]):
            listed = set(listed_flags(helps[module]))
            unknown.setdefault(module, set()).update(f for f in flags if f not in listed)
    for m, fs in unknown.items():
        if fs:
            extra[m] = names[m] + ("--help",) + tuple(sorted(fs))
    extra_results = _run_all(extra.values())
    accepted = {}
    for m in modules:
        more = extra_results[extra[m]] if m in extra else (0, "", "")
        accepted[m] = _accepted_flags(helps[m], more[1])
        if not _is_absl(helps[m]):  # aliases announce themselves before --help exits
            accepted[m] |= {
                f
                for f in unknown.get(m, ())
                if re.search(rf"^warning: {re.escape(f)} is deprecated", more[2], re.MULTILINE)
            }
    problems = []
    for where, module, flags in commands:
        if module not in names:
            problems.append(
                f"{where}: `python -m {module}` is not an entry point of this repository"
            )
            continue
        bad = [f for f in flags if f not in accepted[module]]
        if bad:
            problems.append(
                f"{where}: `python -m {module}` is documented with {bad}, which its "
                "parser neither lists nor accepts as an alias"
            )
    assert not problems, "\n".join(problems)


def test_doc_command_extraction_sees_code_blocks_inline_code_and_continuations():
    """The extractor itself, on a known text (so a regex slip cannot silence the docs test)."""
    import tempfile

    text = (
        "Run `python -m tflite.benchmark m.tflite --json out.json` inline (python -m tflite.*).\n"
        "```\n"
        "python -m tflite.export --model conv_small \\\n"
        "    --fp32 --output x.tflite  # --not_a_flag in a comment\n"
        "# python -m tflite.roundtrip --commented_out\n"
        "```\n"
        "    python -m mobilenetv4.roofline --models a,b [--out DIR]\n"
    )
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "x.md")
        with open(path, "w") as f:
            f.write(text)
        got = [(m, flags) for _, m, flags in documented_commands([path])]
    assert got == [
        ("tflite.benchmark", ["--json"]),
        ("tflite.export", ["--model", "--fp32", "--output"]),
        ("mobilenetv4.roofline", ["--models", "--out"]),
    ], got
    assert listed_flags(
        "usage: x\n\noptions:\n  -h, --help  show\n  --out-dir DIR  where\n  --models MODELS\n"
    ) == ["-h", "--help", "--out-dir", "--models"]
    assert bad_spellings(["-h", "--help", "--out-dir", "--models", "-m"]) == ["--out-dir", "-m"]


def test_gin_flags_a_job_would_ignore_are_refused():
    # experiments.benchmark_train shares the gin jobs' flags but times a fixed step: a --gin_file
    # it silently ignored would make the user believe the figures are of their config.
    argv = ("-m", "experiments.benchmark_train", "--gin_file=gin_configs/quickstart.gin")
    code, _, err = _run_all([argv])[argv]
    # (the forked runner's TensorFlow may log one C++ line first; no traceback, one error line)
    errors = [line for line in _stderr_lines(err) if line.startswith("error:")]
    assert code == 2 and "Traceback" not in err, (code, err[-2000:])
    assert len(errors) == 1 and "takes no --gin_file" in errors[0], errors
