"""embed's clocks."""

from __future__ import annotations

import time

from floodcache.embed import clocks


def test_wait_clock_adds_up_the_waits_and_passes_every_item():
    def slow():
        for item in range(3):
            time.sleep(0.05)
            yield item

    clock = clocks.WaitClock(slow())
    assert list(clock) == [0, 1, 2]
    assert 0.15 <= clock.waited < 1.0
