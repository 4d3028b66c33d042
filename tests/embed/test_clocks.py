"""embed's clocks."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from floodcache.embed import clocks


def test_wait_clock_adds_up_the_waits_and_passes_every_item(monkeypatch):
    """A fake clock: each item takes 0.05 s to come, the consumer 1 s with each item."""
    now = [0.0]
    monkeypatch.setattr(clocks, "time", SimpleNamespace(perf_counter=lambda: now[0]))

    def slow():
        for item in range(3):
            now[0] += 0.05
            yield item

    clock, seen = clocks.WaitClock(slow()), []
    for item in clock:
        seen.append(item)
        now[0] += 1.0  # the consumer's own work is not a wait
    assert seen == [0, 1, 2]
    assert clock.waited == pytest.approx(0.15) and clock.first == pytest.approx(0.05)
