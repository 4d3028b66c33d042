"""Results written whole or not at all: to a temporary name beside the file, then renamed.

A run stopped part way (Ctrl-C, a crash, a full disk) leaves the earlier file, or none, never
half of one; `os.replace` is atomic within a folder. Used for every result a command writes:
predict's masks and tables, export's checkpoint, evaluate's table, report's markdown and
train's resumable state.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

FIX = "give --out a folder you can write to, with room"


def write_whole(path: Path, write: Callable[[Path], object], fix: str = FIX) -> None:
    """`write(tmp)` a temporary file `.<name>.tmp` beside `path`, then rename it `path`.

    However it fails, the temporary file goes; an OSError (full disk, no permission...)
    becomes a ValueError naming `path` and `fix`, the message the CLI shows."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except BaseException as error:  # Ctrl-C too: no temporary file left behind
        tmp.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise ValueError(f"could not write {path} ({error}); {fix}") from error
        raise
