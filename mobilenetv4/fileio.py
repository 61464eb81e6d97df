"""How this package writes files and guards directories (the guarantees in docs/CONTRACT.md).

- Atomic: every file is written to a temporary name in the same folder and renamed into place only
  when complete (`atomic_path`, `write_bytes`, `write_text`, `write_json`), so a kill at any moment
  leaves nothing, the previous complete file, or the new complete file.
- No clobbering: `check_outputs` refuses an existing output unless `overwrite`, and refuses any
  output that is also an input of the same run, whatever the flag.
- One writer per run directory: `RunLock` takes an exclusive `flock` on DIR/.lock; the kernel drops
  it when the holder dies, so a lock left by a SIGKILLed job is never stale.

No TensorFlow here.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from typing import Iterable, Iterator

from mobilenetv4.cli import UserError

_TMP_PREFIX = ".tmp-"


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yields a temporary path beside `path` (same folder, same suffix, so writers that choose the
    format by suffix, like Keras' `.h5`, behave the same); renames it onto `path` on success and
    removes it on failure. Also works when the writer makes a directory (a SavedModel)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path)) or "."
    base = os.path.basename(path)
    fd, tmp = tempfile.mkstemp(
        prefix=f"{_TMP_PREFIX}{os.getpid()}-", suffix="-" + base, dir=directory
    )
    os.close(fd)
    os.unlink(tmp)  # the writer creates it (some writers refuse an existing file)
    try:
        yield tmp
        if os.path.isfile(tmp):
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        elif not os.path.exists(tmp):
            raise OSError(f"nothing was written to {path}")
        if os.path.isdir(tmp) and os.path.isdir(path):
            # Directories cannot be swapped in one rename: move the old one aside first.
            old = tmp + ".old"
            os.rename(path, old)
            os.rename(tmp, path)
            _remove(old)
        else:
            os.replace(tmp, path)
        _fsync_dir(directory)
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: str) -> None:
    import shutil

    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def write_json(path: str | os.PathLike, obj, indent: int = 2) -> None:
    write_text(path, json.dumps(obj, indent=indent) + "\n")


def _same_file(a: str, b: str) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_outputs(
    outputs: Iterable[str | os.PathLike | None],
    *,
    inputs: Iterable[str | os.PathLike | None] = (),
    overwrite: bool = False,
    flag: str = "--output",
) -> None:
    """Refuses, before any work is done: an output that is an input of the same run; an existing
    output without `overwrite`; an output whose folder is missing or not writable; an output that
    is a directory. Raises UserError naming the path and what to do."""
    inputs = [os.fspath(p) for p in inputs if p]
    for out in outputs:
        if not out:
            continue
        out = os.fspath(out)
        for inp in inputs:
            if _same_file(out, inp):
                raise UserError(
                    f"{flag} {out} is also an input of this run ({inp}); "
                    "write the output to another path"
                )
        if os.path.isdir(out):
            raise UserError(f"{flag} {out} is a directory; give a file name inside it")
        parent = os.path.dirname(os.path.abspath(out))
        check_writable_dir(parent, flag=flag, create=False)
        if os.path.lexists(out) and not overwrite:
            raise UserError(
                f"{flag} {out} already exists; pass --overwrite to replace it or "
                "choose another path"
            )


def check_writable_dir(
    directory: str | os.PathLike, *, flag: str = "--output_dir", create: bool = True
) -> str:
    """Makes sure `directory` is (or can be made) a writable folder; returns it. UserError if it is
    a file, cannot be created, or is read-only."""
    directory = os.fspath(directory)
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise UserError(f"{flag} {directory} is a file, not a directory; choose a directory path")
    if not os.path.isdir(directory):
        if not create:
            raise UserError(
                f"cannot write under {flag}: directory {directory} does not exist; create it first"
            )
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create {flag} {directory}: {e.strerror or e}") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UserError(
            f"cannot write into {flag} {directory}: permission denied; choose another directory"
        )
    return directory


class RunLocked(UserError):
    """Another live process holds the run directory."""


class RunLock:
    """An exclusive lock on a run directory (`with RunLock(model_dir): ...`).

    `flock` on DIR/.lock: released by the kernel when the process exits or is killed, so a crash
    never leaves a stale lock; the file keeps the holder's pid for the error message.
    """

    def __init__(self, directory: str | os.PathLike, what: str = "model_dir"):
        self.directory = os.fspath(directory)
        self.what = what
        self._fd = None

    def acquire(self) -> "RunLock":
        import fcntl

        check_writable_dir(self.directory, flag=f"--{self.what}")
        path = os.path.join(self.directory, ".lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            try:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            except OSError:
                holder = "unknown"
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise RunLocked(
                    f"{self.what} {self.directory} is in use by another running job "
                    f"(pid {holder}); wait for it to finish or use another "
                    f"{self.what}"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
