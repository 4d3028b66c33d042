"""An output folder holds only floodcache's own outputs: a command refuses a folder that holds
anything else, and replaces (with --overwrite or as it always does) only files it wrote; and a
path built from an option stays inside the folder it belongs to.

Each command says which paths in its folder are its own (`ours`, relative paths); a temporary
file of an interrupted write (`atomic.write_whole`) counts as ours too.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from floodcache.utils.atomic import is_temporary
from floodcache.utils.lock import ProcessLock

# A report folder: the report, its evaluation (by default in the same folder) and `run`'s audit
EVALUATION_FILES = frozenset({"metrics.parquet", "metrics.csv", "masks.parquet", "evaluation.json"})
FIGURES = "figures"  # the report's figures, in a folder of their own
FIGURES_WRITTEN = ".figures-written"  # the names of the figures the report wrote, one a line
REPORT_FILES = frozenset({"report.md", "report.html", "audit.csv", FIGURES_WRITTEN})
REPORT_FILES |= EVALUATION_FILES


def writing(out: Path, command: str, within: bool = False) -> ProcessLock:
    """`<out>.lock` beside the output `out` (a folder or a file), or `.<command>.lock` in the
    folder `out` when `within` (where the folder beside it is an input, as a folder of
    photos can be), held while `command` writes it: a second run into the same output stops
    at once, naming the live process, rather than one silently replacing the other's."""
    out = Path(out).resolve()
    folder = out if within else out.parent
    folder.mkdir(parents=True, exist_ok=True)
    lock = out / f".{command}.lock" if within else out.with_name(out.name + ".lock")
    return ProcessLock(lock, f"another {command} is writing {out}", "or choose another --out")


def check_name_room(out: Path, extra: int, option: str) -> None:
    """ValueError naming `option` where the names made from `out`'s (up to `extra` bytes
    longer: `<out>.partial`, a temporary name) exceed the file system's limit: found before
    any work, not when the first result is written."""
    out = Path(out)
    folder = next((p for p in (out.parent, *out.parent.parents) if p.is_dir()), Path("."))
    limit = os.pathconf(folder, "PC_NAME_MAX")
    length = len(os.fsencode(out.name))
    if length + extra > limit:
        raise ValueError(
            f"{option} {out}: its name is {length} bytes, and the files made from it need "
            f"{extra} more, over this file system's limit of {limit}: choose a shorter {option}"
        )


def plain_name(name: str, option: str) -> str:
    """`name`, refused (ValueError naming `option`) unless it names one file or folder: no
    separator, not `.` or `..`, not empty."""
    if not str(name).strip() or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise ValueError(
            f"{option} {name!r} is not a plain name: it would put files outside their folder "
            f"or in place of it; give {option} a name without / \\ or .., such as 'flood'"
        )
    return name


def inside(folder: Path, name: str, option: str) -> Path:
    """`folder / name`, refused (ValueError naming `option`) unless it lies inside `folder`:
    a name with `..`, a separator leading out, or an absolute path would write elsewhere."""
    folder, name = Path(folder), str(name)
    path = folder / name
    base, resolved = folder.resolve(), path.resolve()
    if not name.strip() or resolved == base or base not in resolved.parents:
        raise ValueError(
            f"{option} {name!r} would write to {resolved}, outside {folder}: give {option} a "
            "plain name (letters, digits, - _ .), not a path"
        )
    return path


def refuse_foreign(folder: Path, ours: Callable[[Path], bool], option: str) -> None:
    """FileExistsError naming `option` where `folder` holds a file that `ours` (given its path
    relative to `folder`) does not claim, or where `folder` is a file: writing there could
    replace or delete the user's files."""
    folder = Path(folder)
    if not folder.exists():
        return
    if not folder.is_dir():
        raise FileExistsError(f"{option} {folder} is a file, not a folder: choose another {option}")
    foreign = sorted(
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if not path.is_dir() and not is_temporary(path.name) and not ours(path.relative_to(folder))
    )
    if foreign:
        raise FileExistsError(
            f"{folder} holds {foreign[0]}"
            + (f" and {len(foreign) - 1} other files" if len(foreign) > 1 else "")
            + f" that floodcache did not write, and would replace or remove them: choose another "
            f"{option} (an empty or new folder), or move them away"
        )
