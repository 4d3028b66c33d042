"""Results written whole or not at all: to a temporary name beside the result, synced to
disk, then renamed.

A run stopped part way (Ctrl-C, a crash, a full disk, a power cut) leaves the earlier result,
or none, never half of one: `os.replace` is atomic within a folder, and the data is on disk
before the new name points at it. Every result a command writes goes through here: cache
parts and the cache, train's run folder and resumable state, evaluate's table, report's
markdown and figures, predict's masks and tables, export's checkpoint.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

FIX = "give --out a folder you can write to, with room"
_TEMPORARY = re.compile(r"^\..+\.(tmp|tmp-[\w-]+|old-[\w-]+)$")


def temporary_name(path: Path) -> Path:
    """A temporary name beside `path`, unique to this writer: two processes (or threads)
    writing the same result never write into, or rename, each other's file."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:12]}.tmp")


def is_temporary(name: str) -> bool:
    """Whether a file name is one of the temporary names written here (`temporary_name`,
    `write_folder_whole`'s), left behind by a writer that was killed."""
    return bool(_TEMPORARY.match(name))


def sync(path: Path) -> None:
    """fsync one file, or one folder's entries (not the files in it)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def sync_tree(folder: Path) -> None:
    """fsync every file and folder under `folder`, and `folder` itself."""
    for child in Path(folder).iterdir():
        sync_tree(child) if child.is_dir() else sync(child)
    sync(folder)


def replace_synced(tmp: Path, final: Path) -> None:
    """fsync `tmp`, rename it `final` (atomically replacing a file there), fsync the folder."""
    sync(tmp)
    os.replace(tmp, final)
    sync(Path(final).parent)


def write_whole(path: Path, write: Callable[[Path], object], fix: str = FIX) -> None:
    """`write(tmp)` a temporary file beside `path` (`temporary_name`), then put it in place.

    However it fails, the temporary file goes; an OSError (full disk, no permission...)
    becomes a ValueError naming `path` and `fix`, the message the CLI shows."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        replace_synced(tmp, path)
    except BaseException as error:  # Ctrl-C too: no temporary file left behind
        tmp.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise ValueError(f"could not write {path} ({error}); {fix}") from error
        raise


def write_folder_whole(folder: Path, fill: Callable[[Path], object], fix: str = FIX) -> None:
    """`fill(tmp)` a fresh temporary folder beside `folder`, then put it in place of `folder`.

    A folder cannot replace another in one rename: the old one is renamed aside first and
    removed once the new one is in place, so at every moment one of them holds a whole
    result. Errors as `write_whole`'s."""
    folder = Path(folder)
    unique = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
    tmp = folder.with_name(f".{folder.name}.tmp-{unique}")
    old = folder.with_name(f".{folder.name}.old-{unique}")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        fill(tmp)
        sync_tree(tmp)
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
        sync(folder.parent)
    except BaseException as error:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not folder.exists():
            os.replace(old, folder)
        if isinstance(error, OSError):
            raise ValueError(f"could not write {folder} ({error}); {fix}") from error
        raise
    shutil.rmtree(old, ignore_errors=True)
