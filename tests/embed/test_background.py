"""embed's background processes: deaf to Ctrl-C, and SIGTERM ends them as it always did."""

from __future__ import annotations

import os
import signal

from floodcache.embed.background import background_processes


def test_sigterm_ends_a_background_process_whatever_its_parent_does_with_it():
    """The command's handler (SIGTERM as Ctrl-C) is not the background processes': the pool
    ends a broken one's processes with SIGTERM, and they must go."""

    def terminate(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        pool = background_processes(1)
    finally:
        signal.signal(signal.SIGTERM, previous)
    (process,) = pool._processes.values()
    os.kill(process.pid, signal.SIGTERM)
    process.join(10)
    assert process.exitcode == -signal.SIGTERM
    pool.shutdown()
