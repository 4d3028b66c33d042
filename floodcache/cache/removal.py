"""Removing a finished cache's parts without making `embed` wait: they are set aside at once
and removed by a process of their own, which may outlive `embed` (as `git gc --auto` does)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import time
from pathlib import Path

from floodcache.cache.format import parts_folder

# Parts set aside once the cache is in place: <cache>.parts.removing-<pid>-<ns>, removed by a
# process of their own (`set_aside_and_remove`).
SET_ASIDE = ".removing-"


def set_aside_and_remove(parts: Path) -> None:
    """Rename the `parts` folder out of the way, then remove it in a process that may outlive
    this one, as `git gc --auto` does: the cache is complete and in place already, and
    removing ~2 MiB a view would otherwise be the last thing embed waits for
    (`removals_pending` lists such folders)."""
    set_aside = parts.with_name(f"{parts.name}{SET_ASIDE}{os.getpid()}-{time.time_ns()}")
    os.replace(parts, set_aside)
    remove_in_background(set_aside)


_removing: list[subprocess.Popen] = []  # held while they run: a dropped one warns of a leak


def _reap_removals() -> None:
    """Forget the removal processes that have ended (`poll` reaps them)."""
    _removing[:] = [process for process in _removing if process.poll() is None]


def remove_in_background(folder: Path) -> None:
    _reap_removals()
    try:
        process = subprocess.Popen(
            ["rm", "-rf", "--", str(folder)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # not stopped by the Ctrl-C that stops this process
        )
    except OSError:  # no `rm` to run: remove it here
        shutil.rmtree(folder, ignore_errors=True)
    else:
        _removing.append(process)


def removals_pending(cache: Path) -> list[Path]:
    """The parts of `cache` set aside and not removed yet."""
    parts = parts_folder(cache)
    return sorted(parts.parent.glob(f"{glob.escape(parts.name)}{SET_ASIDE}*"))


def wait_for_removals(cache: Path, timeout: float = 120.0) -> float:
    """Wait until the parts of `cache` set aside are removed (for a measurement that follows);
    the seconds waited. Raises TimeoutError after `timeout` seconds."""
    start = time.perf_counter()
    while removals_pending(cache):
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"{removals_pending(cache)} still there after {timeout:.0f} s")
        time.sleep(0.01)
    _reap_removals()
    return time.perf_counter() - start
