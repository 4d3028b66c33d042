"""One writer at a time: a lock held by a live process, never the mere existence of a file.

`ProcessLock(path)` takes a POSIX record lock on `path` and writes this process's id in it.
The kernel drops the lock when the process ends however it ends (kill -9 included), so a file
left behind blocks nobody; one held names the live process that holds it. Record locks, not
flock: the processes forked from the holder (readers, writers) do not hold it too.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

_held: set[Path] = set()  # locked by this process: record locks do not exclude within one


class ProcessLock:
    """`path` locked for this process until `release` (or the end of a `with` block).

    Raises `error` naming the process that holds it, `what` it does and the `fix`; an
    OSError where `path` cannot be created (a read-only folder)."""

    def __init__(self, path: Path, what: str, fix: str, error: type[Exception] = ValueError):
        self.path = Path(path)
        self.key = self.path.resolve()
        if self.key in _held:  # before opening it: closing any copy would drop the lock
            raise error(_busy(self.path, what, fix, str(os.getpid())))
        self.file = _acquire(self.path, what, fix, error)
        _held.add(self.key)

    def release(self) -> None:
        """Remove the file while still holding it, then unlock: one that waited on this file
        finds it gone and takes a new one (`_acquire`)."""
        if self.file is None:
            return
        if _same_file(self.file, self.path):
            self.path.unlink(missing_ok=True)
        self.file.close()
        self.file = None
        _held.discard(self.key)

    def __enter__(self) -> ProcessLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _acquire(path: Path, what: str, fix: str, error: type[Exception]):
    while True:
        file = open(path, "a+")  # noqa: SIM115 -- "a+", not "w": the holder's id stays readable
        try:
            fcntl.lockf(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (BlockingIOError, PermissionError):  # EAGAIN or EACCES, as the system says
            file.seek(0)
            holder = file.read().strip()
            file.close()
            raise error(_busy(path, what, fix, holder)) from None
        if _same_file(file, path):
            break
        file.close()  # removed or replaced before it was locked: lock the file there now
    file.truncate(0)
    file.write(f"{os.getpid()}\n")
    file.flush()
    return file


def _same_file(file, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(file.fileno()), os.stat(path))
    except FileNotFoundError:
        return False


def _busy(path: Path, what: str, fix: str, holder: str) -> str:
    who = f"process {holder}" if holder.isdigit() else "another process"
    return (
        f"{what}: {who} is running and holds the lock {path}. Wait for it to finish or stop "
        f"it, {fix}. Removing {path} would not stop it."
    )
