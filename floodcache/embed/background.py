"""Background processes for embed (readers, part writers, the assembler): started at once,
deaf to Ctrl-C, gone with their parent."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, wait


class ReaderDied(RuntimeError):
    """A reader process ended without a word (killed: by the OOM killer, say)."""


def background_processes(
    count: int, initializer: Callable | None = None, initargs: tuple = ()
) -> ProcessPoolExecutor:
    """`count` processes, started now (before the readers and the progress bar add threads to
    this one), that ignore Ctrl-C and end with this process (`_serve`), each then running
    `initializer(*initargs)`. Forked on Linux, so that they start at once; spawned elsewhere
    (macOS frameworks do not survive a fork). A process takes the next task as soon as it is
    free, whichever it is."""
    pool = ProcessPoolExecutor(
        count,
        mp_context=multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn"),
        initializer=_serve,
        initargs=(os.getpid(), initializer, initargs),
    )
    wait([pool.submit(time.sleep, 0) for _ in range(count)])
    return pool


def _serve(parent: int, initializer: Callable | None, initargs: tuple) -> None:
    """A background process ignores Ctrl-C: its parent stops it once the work handed over is
    done, so that an interrupted run keeps every part it handed over, whole. If its parent
    dies (killed, it cannot say so), it exits."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the command's handler (`user_errors`)

    def exit_with_parent() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=exit_with_parent, daemon=True).start()
    if initializer is not None:
        initializer(*initargs)
