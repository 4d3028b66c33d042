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


def test_embed_says_its_time_after_the_first_batch_on_a_fake_clock(caplog):
    """The first batch of 2 views took 20 s (fake clock): 8 views left, about 80 s, said once,
    with what a CPU user can do instead."""
    import logging

    from tqdm import tqdm

    from floodcache.embed.encode import Written

    start = clocks.HostClock(wall=100.0, cpu=0.0, thread=0.0)
    written = Written(tqdm(disable=True), clocks.Timing(100.0), start=start, total=10, cpu=True)
    with caplog.at_level(logging.INFO, logger="floodcache.embed.encode"):
        written(2, 120.0)
        written(2, 140.0)
    (line,) = [r.getMessage() for r in caplog.records if "left" in r.getMessage()]
    assert "about 80 s for the 8 views left (10 s a view, measured on the first 2)" in line
    assert "on a GPU" in line and "pipeline check" in line
