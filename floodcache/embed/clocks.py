"""Where an embed run's time goes, for its log and result: the first batch, the host's CPU,
the waits for the readers."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass
class Timing:
    """Where an embed run's time went, and the sizes it chose, for EmbedResult."""

    start: float
    warmup: float = 0.0
    warmup_views: int = 0
    finalize: float = 0.0
    batch_size: int = 0
    workers: int = 0

    def first_batch(self, views: int, written: float) -> None:
        """Note the first batch, `views` views written at time.perf_counter() `written`."""
        if not self.warmup_views:
            self.warmup, self.warmup_views = written - self.start, views


@dataclass
class HostClock:
    """Wall time and this process's CPU time (all its threads, and its main thread's) at
    some moment, for embed's log."""

    wall: float
    cpu: float
    thread: float

    @classmethod
    def now(cls) -> HostClock:
        times = os.times()
        return cls(time.perf_counter(), times.user + times.system, time.thread_time())

    def since(self, earlier: HostClock, views: int) -> str:
        """What this process's CPU did from `earlier` to this moment, over `views` views."""
        if views <= 0:
            return "no time (one batch)"
        per_view = [
            (now - then) / views * 1000
            for now, then in [(self.cpu, earlier.cpu), (self.thread, earlier.thread)]
        ]
        return (
            f"{per_view[0]:.1f} ms of CPU a view, {per_view[1]:.1f} in its main thread, "
            f"over {views / max(self.wall - earlier.wall, 1e-9):.0f} views/s"
        )


class WaitClock:
    """An iterable's items, adding up in `waited` the seconds spent waiting for each."""

    def __init__(self, items: Iterable):
        self.items, self.waited = items, 0.0
        self.first: float | None = None  # the wait for the first item

    def __iter__(self) -> Iterator:
        items = iter(self.items)
        while True:
            start = time.perf_counter()
            try:
                item = next(items)
            except StopIteration:
                return
            finally:
                self.waited += time.perf_counter() - start
                if self.first is None:
                    self.first = self.waited
            yield item
