"""Runs many `python -m MODULE ...` commands cheaply, for the CLI acceptance tests.

A cold `import tensorflow` costs about 5 s of CPU, and the acceptance tests start dozens of
commands. `run_all` starts one "zygote" interpreter that imports the heavy third-party libraries
(numpy, tensorflow, tf_keras, h5py, gin, absl; never this repository's modules) once and forks a
child per command. The child runs the command as `python` would - `-m MODULE` through
`runpy.run_module(run_name="__main__")`, a script through `runpy.run_path`, `-c CODE` through
`exec` - with sys.argv set, stdin closed and stdout/stderr captured; its exit code is the
process's. Two children run at a time. A child that hangs past the timeout or dies of a signal
(fork after a library started threads) is re-run as a plain subprocess, so the results never
depend on the shortcut.

Usage: `run_all([("-m", "tflite.export", "--help"), ...], cwd=..., env={...})` -> [Result].

Import it with `load()` below (tests/test_contract.py, tests/reliability/conftest.py): putting
tests/ itself on sys.path would let tests/tflite, tests/mobilenetv4 and tests/experiments shadow the
real packages as namespace packages wherever the repository is not on sys.path.
"""

import collections
import concurrent.futures
import json
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKERS = 2

Result = collections.namedtuple("Result", "code stdout stderr seconds", defaults=(None,))

_ZYGOTE = r"""
import json, os, runpy, shutil, sys, tempfile, time, traceback
for lib in ("numpy", "tensorflow", "tf_keras", "h5py", "gin", "absl.app", "absl.flags"):
  try:
    __import__(lib)
  except Exception:
    pass
argvs, workers, timeout, kill_after = json.load(sys.stdin)
tmp = tempfile.mkdtemp(prefix="cli-runner-")

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
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    sys.stdin = open(0, closefd=False)
    try:
      if argv[0] == "-m":
        sys.argv = [argv[1]] + argv[2:]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
      elif argv[0] == "-c":
        sys.argv = ["-c"] + argv[2:]
        exec(compile(argv[1], "<string>", "exec"), {"__name__": "__main__"})
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
    killed = False
    if not done and kill_after[i] is not None and time.time() - started >= kill_after[i]:
      os.kill(pid, 9)  # the caller asked for it: report the kill
      done, status = os.waitpid(pid, 0)
      killed = True
    elif not done and time.time() - started > timeout:
      os.kill(pid, 9)
      done, status = os.waitpid(pid, 0)
      status = None
    if done:
      del running[i]
      if status is None or (os.WIFSIGNALED(status) and not killed):
        result = None
      else:
        with open(out, errors="replace") as f, open(err, errors="replace") as g:
          result = [os.waitstatus_to_exitcode(status), f.read(), g.read(),
                    time.time() - started]
      print(json.dumps([i, result]), flush=True)
  time.sleep(0.02)
shutil.rmtree(tmp, ignore_errors=True)
"""


def environment(extra=None):
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("PYTHONWARNINGS", None)
    env.update(extra or {})
    return env


def run_subprocess(argv, cwd=None, env=None, timeout=300):
    """One command in a fresh interpreter: argv as for run_all."""
    import time

    started = time.time()
    try:
        p = subprocess.run(
            [sys.executable, *argv],
            check=False,
            cwd=cwd or REPO,
            env=environment(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        return Result(p.returncode, p.stdout, p.stderr, time.time() - started)
    except subprocess.TimeoutExpired as e:
        return Result(None, e.stdout or "", f"timed out after {timeout} s")


def run_all(argvs, cwd=None, env=None, timeout=300, kill_after=None, workers=WORKERS):
    """Runs each argv (a sequence: "-m", MODULE, args... | SCRIPT, args... | "-c", CODE, args...)
    as `python ARGV` would, `workers` at a time; returns [Result] in order (`seconds`: wall time).

    kill_after: per argv, None or the seconds after its start at which it gets SIGKILL (its result
    then has code -9; it is not re-run)."""
    argvs = [[str(a) for a in argv] for argv in argvs]
    kill_after = list(kill_after) if kill_after is not None else [None] * len(argvs)
    if not argvs:
        return []
    results = {}
    try:
        zygote = subprocess.run(
            [sys.executable, "-c", _ZYGOTE],
            check=False,
            cwd=cwd or REPO,
            env=environment(env),
            capture_output=True,
            text=True,
            input=json.dumps([argvs, workers, timeout, kill_after]),
            timeout=timeout * (2 + len(argvs) // WORKERS),
        )
        for line in zygote.stdout.splitlines():
            try:
                i, result = json.loads(line)
            except ValueError:
                continue
            if result is not None:
                results[i] = Result(*result)
    except subprocess.TimeoutExpired:
        pass
    retry = [i for i in range(len(argvs)) if i not in results]
    if retry and any(kill_after[i] is not None for i in retry):
        raise RuntimeError(
            "cli_runner: a command to be killed hung or died on its own: "
            + str([argvs[i] for i in retry])
        )
    if retry:
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            done = pool.map(lambda i: run_subprocess(argvs[i], cwd, env, timeout), retry)
            results.update(zip(retry, done))
    return [results[i] for i in range(len(argvs))]


def error_lines(stderr):
    """The non-empty lines of a stderr text."""
    return [line for line in stderr.splitlines() if line.strip()]


def sha256(path):
    """The SHA-256 of a file's bytes (None when it does not exist)."""
    import hashlib

    if not os.path.exists(path):
        return None
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def describe(result, argv=None):
    """One short text for an assertion message: the command, exit code and stderr tail."""
    lines = error_lines(result.stderr)
    cmd = " ".join(str(a) for a in argv) if argv else ""
    return f"`python {cmd}` exit {result.code}; stderr tail: {lines[-4:]}"


def is_one_line_user_error(result):
    """Exit 2, exactly one stderr line starting `error:` and no traceback (log lines of TensorFlow's
    runtime and absl, which may precede it, are not the message)."""
    lines = [line for line in error_lines(result.stderr) if not _TF_LOG.match(line)]
    return (
        result.code == 2
        and "Traceback" not in result.stderr
        and sum(line.startswith("error:") for line in lines) == 1
    )


# TensorFlow/absl C++ log lines (`E0000 00:00:...`, `2026-01-01 00:00:00.0: E ...`, `WARNING: All
# log messages before absl::InitializeLog()`), printed by the runtime whatever the package does.
_TF_LOG = re.compile(
    r"^([IWEF]\d{4} \d\d:\d\d:|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] |"
    r"WARNING: All log messages before absl|INFO: Created TensorFlow Lite)"
)
