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
subprocesses run two at a time and each process's results are cached for the tests after it.
"""
import concurrent.futures
import functools
import json
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("mobilenetv4", "experiments", "tflite")
SCRIPTS = "scripts"
DOCS = ["README.md"] + sorted(
    os.path.join("docs", f) for f in os.listdir(os.path.join(REPO, "docs")) if f.endswith(".md"))
SNAKE_FLAG = re.compile(r"^--[a-z0-9]+(_[a-z0-9]+)*$")
MAIN_BLOCK = re.compile(r"""^if\s+__name__\s*==\s*['"]__main__['"]\s*:""", re.M)
TIMEOUT = 300  # one help call; they normally take a few seconds
WORKERS = 2
BOGUS = "--no_such_flag"


def _env():
  env = dict(os.environ)
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
  env.pop("PYTHONWARNINGS", None)
  return env


@functools.lru_cache(maxsize=None)
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
        found[module] = (sys.executable, "-m", module)
  scripts = os.path.join(REPO, SCRIPTS)
  if os.path.isdir(scripts):
    for f in sorted(os.listdir(scripts)):
      path = os.path.join(scripts, f)
      if f.endswith(".py"):
        with open(path, encoding="utf-8") as fh:
          if MAIN_BLOCK.search(fh.read()):
            found[f"{SCRIPTS}/{f}"] = (sys.executable, path)
  return dict(sorted(found.items()))


# Every call imports its tool, and a cold TensorFlow import costs ~5 s of CPU, so the calls run in
# children forked from one "zygote" interpreter that has imported the heavy third-party libraries
# (never this repository's modules) once: each child then imports the tool itself, runs it as
# `python -m` would (runpy, run_name="__main__", sys.argv set), and its exit code, stdout and
# stderr are returned. Two children run at a time. A child that hangs or dies of a signal (fork
# after a library started threads) is re-run as a plain subprocess.
_ZYGOTE = r"""
import json, os, runpy, sys, tempfile, time, traceback
for lib in ("numpy", "tensorflow", "tf_keras", "h5py", "gin", "absl.app", "absl.flags"):
  try:
    __import__(lib)
  except Exception:
    pass
argvs, workers, timeout = json.load(sys.stdin)
tmp = tempfile.mkdtemp(prefix="contract-")

def child(i, argv):
  out, err = os.path.join(tmp, f"{i}.out"), os.path.join(tmp, f"{i}.err")
  pid = os.fork()
  if pid:
    return pid, time.time(), out, err
  code = 70
  try:
    for fd, path in ((1, out), (2, err)):
      os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", closefd=False)
    sys.stdin = open(os.devnull)
    try:
      if argv[0] == "-m":
        sys.argv = [argv[1]] + argv[2:]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
      else:
        sys.argv = list(argv)
        sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))
        runpy.run_path(argv[0], run_name="__main__")
      code = 0
    except SystemExit as e:
      if e.code is None or isinstance(e.code, int):
        code = e.code or 0
      else:
        print(e.code, file=sys.stderr)
        code = 1
    except BaseException:
      traceback.print_exc()
      code = 1
  finally:
    try:
      sys.stdout.flush()
      sys.stderr.flush()
    finally:
      os._exit(code)

pending = list(enumerate(argvs))
running = {}
while pending or running:
  while pending and len(running) < workers:
    i, argv = pending.pop(0)
    running[i] = child(i, argv)
  for i, (pid, started, out, err) in list(running.items()):
    done, status = os.waitpid(pid, os.WNOHANG)
    if not done and time.time() - started > timeout:
      os.kill(pid, 9)
      done, status = os.waitpid(pid, 0)
      status = None
    if done:
      del running[i]
      if status is None or os.WIFSIGNALED(status):
        result = None
      else:
        with open(out, errors="replace") as f, open(err, errors="replace") as g:
          result = [os.waitstatus_to_exitcode(status), f.read(), g.read()]
      print(json.dumps([i, result]), flush=True)
  time.sleep(0.02)
import shutil
shutil.rmtree(tmp, ignore_errors=True)
"""
_CACHE = {}


def _subprocess(argv):
  try:
    p = subprocess.run(list(argv), cwd=REPO, env=_env(), capture_output=True, text=True,
                       timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr
  except subprocess.TimeoutExpired:
    return None, "", f"timed out after {TIMEOUT} s"


def _run_all(argvs):
  """Runs the argvs (tuples starting with sys.executable), two at a time, each once per process;
  returns {argv: (exit code, stdout, stderr)}."""
  argvs = list(dict.fromkeys(argvs))
  todo = [a for a in argvs if a not in _CACHE]
  if todo:
    zygote = subprocess.run(
        [sys.executable, "-c", _ZYGOTE], cwd=REPO, env=_env(), capture_output=True, text=True,
        input=json.dumps([[list(a[1:]) for a in todo], WORKERS, TIMEOUT]),
        timeout=TIMEOUT * (1 + len(todo) // WORKERS))
    results = {}
    for line in zygote.stdout.splitlines():
      try:
        i, result = json.loads(line)
      except ValueError:
        continue
      results[i] = result
    retry = [a for i, a in enumerate(todo) if results.get(i) is None]
    for i, argv in enumerate(todo):
      if results.get(i) is not None:
        _CACHE[argv] = tuple(results[i])
    if retry:
      with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
        for argv, result in zip(retry, pool.map(_subprocess, retry)):
          _CACHE[argv] = result
  return {a: _CACHE[a] for a in argvs}


def _run(argv):
  return _run_all([argv])[argv]


def _is_absl(help_text):
  return "--helpfull" in help_text


def _stderr_lines(stderr):
  return [line for line in stderr.splitlines() if line.strip()]


def listed_flags(help_text):
  """Option strings a help text lists: argparse's option lines (indented two spaces, after the
  first 'options:'-style section header) or absl's `  --name:` / `  --[no]name:` lines."""
  flags = []
  if _is_absl(help_text):
    for m in re.finditer(r"^\s+(--(?:\[no\])?[^\s:]+):", help_text, re.M):
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
  for expected in ("experiments.train", "experiments.distill.generate", "tflite.export",
                   "tflite.benchmark", "mobilenetv4.convert", "mobilenetv4.summary",
                   "mobilenetv4.roofline"):
    assert expected in names, f"{expected} not discovered among {sorted(names)}"
  assert len(names) >= 12, sorted(names)


def test_help_exits_0_and_lists_only_snake_case_flags():
  names = entry_points()
  results = _run_all(argv + ("--help",) for argv in names.values())
  problems = []
  for name, argv in names.items():
    code, out, err = results[argv + ("--help",)]
    if code != 0:
      problems.append(f"{name} --help: exit {code} (expected 0); stderr tail: "
                      f"{_stderr_lines(err)[-1:] or ''}")
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
      problems.append(f"{name} {BOGUS}: expected one stderr line 'error: ...', got "
                      f"{len(lines)}: {lines[:4]}")
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
    flags |= {f"--no{b}" for b in re.findall(r"^\s+--\[no\]([^\s:]+):", full_help_text, re.M)}
  return flags


def test_documented_commands_name_entry_points_and_accepted_flags():
  commands = documented_commands()
  assert commands, "no `python -m` commands found in README.md and docs/*.md"
  names = entry_points()
  modules = sorted({m for _, m, _ in commands if m in names})
  helps = {m: r[1] for m, r in zip(modules, _run_all(names[m] + ("--help",)
                                                      for m in modules).values())}
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
      accepted[m] |= {f for f in unknown.get(m, ())
                      if re.search(rf"^warning: {re.escape(f)} is deprecated", more[2], re.M)}
  problems = []
  for where, module, flags in commands:
    if module not in names:
      problems.append(f"{where}: `python -m {module}` is not an entry point of this repository")
      continue
    bad = [f for f in flags if f not in accepted[module]]
    if bad:
      problems.append(f"{where}: `python -m {module}` is documented with {bad}, which its "
                      "parser neither lists nor accepts as an alias")
  assert not problems, "\n".join(problems)


def test_doc_command_extraction_sees_code_blocks_inline_code_and_continuations():
  """The extractor itself, on a known text (so a regex slip cannot silence the docs test)."""
  import tempfile
  text = ("Run `python -m tflite.benchmark m.tflite --json out.json` inline (python -m tflite.*).\n"
          "```\n"
          "python -m tflite.export --model conv_small \\\n"
          "    --fp32 --output x.tflite  # --not_a_flag in a comment\n"
          "# python -m tflite.roundtrip --commented_out\n"
          "```\n"
          "    python -m mobilenetv4.roofline --models a,b [--out DIR]\n")
  with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "x.md")
    with open(path, "w") as f:
      f.write(text)
    got = [(m, flags) for _, m, flags in documented_commands([path])]
  assert got == [("tflite.benchmark", ["--json"]),
                 ("tflite.export", ["--model", "--fp32", "--output"]),
                 ("mobilenetv4.roofline", ["--models", "--out"])], got
  assert listed_flags("usage: x\n\noptions:\n  -h, --help  show\n  --out-dir DIR  where\n"
                      "  --models MODELS\n") == ["-h", "--help", "--out-dir", "--models"]
  assert bad_spellings(["-h", "--help", "--out-dir", "--models", "-m"]) == ["--out-dir", "-m"]
