"""How long a long step will take, said before most of it runs: from the first units it
measured on this machine, never from a constant."""

from __future__ import annotations

import time
from collections.abc import Callable

# What a CPU user can do instead of waiting: both are in the README.
CPU_ALTERNATIVES = (
    "on a GPU this takes minutes (docs/performance.md has measured rates); the pipeline "
    "check (README: --model-type vit_tiny --limit 12) shows every step working in far less"
)


def duration(seconds: float) -> str:
    """`seconds` as a person reads it: '40 s', '12 min', '3 h 05 min'."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def estimate_line(unit: str, measured: int, seconds: float, remaining: int, cpu: bool) -> str:
    """'about 2 h 10 min for the 862 views left (9.0 s a view, measured on the first 2)'.
    `seconds` is what the first `measured` units took, start-up included: the estimate errs
    long. On a CPU the line also says what is quicker."""
    per_unit = seconds / max(measured, 1)
    article = "an" if unit[0] in "aeiou" else "a"
    line = (
        f"about {duration(per_unit * remaining)} for the {remaining} {unit}"
        f"{'s' * (remaining != 1)} left "
        f"({per_unit:.3g} s {article} {unit}, measured on the first {measured})"
    )
    return f"{line}; {CPU_ALTERNATIVES}" if cpu else line


class FirstPart:
    """The estimate of a long step said once, after its first part (a first batch of images,
    a first row of tiles): the time from this object's creation to the end of the first
    `part` of `total` units, scaled to the units left."""

    def __init__(
        self,
        unit: str,
        total: int,
        cpu: bool,
        part: int = 1,
        clock: Callable[[], float] | None = None,
    ):
        self.unit, self.total, self.cpu, self.part = unit, total, cpu, max(part, 1)
        self.clock = clock or time.perf_counter
        self.start = self.clock()
        self.done = 0
        self.said = False

    def add(self, count: int) -> str | None:
        """Count `count` more units done -> the estimate line (`estimate_line`) the first time
        `part` units are done with some left; else None."""
        self.done += count
        if self.said or self.done < self.part:
            return None
        self.said = True
        left = self.total - self.done
        if left <= 0:
            return None
        seconds = self.clock() - self.start
        return estimate_line(self.unit, self.done, seconds, left, self.cpu)
