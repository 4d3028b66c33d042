"""`bench`'s explore row: a prompt's answer by both decoders, timed prompt by prompt."""

from __future__ import annotations

import itertools

import numpy as np
import torch

from floodcache.bench.explore import explore_row


class FakeClock:
    """Each answer takes the next of `durations` seconds: calls come in (start, end) pairs."""

    def __init__(self, durations):
        self.durations = iter(durations)
        self.now = 0.0
        self.calls = itertools.count()

    def __call__(self) -> float:
        if next(self.calls) % 2:
            self.now += next(self.durations)
        return self.now


def test_the_median_and_95th_percentile_are_of_the_timed_prompts(tiny_cache):
    durations = np.random.default_rng(1).permutation(np.arange(1, 101) / 1000)  # 1..100 ms
    row = explore_row(tiny_cache, torch.device("cpu"), prompts=100, clock=FakeClock(durations))
    assert row.stage == "explore" and row.views == 100
    assert row.seconds == np.sum(durations)
    assert "median 50 ms, 95th percentile 95 ms (100 prompts on 12 views" in row.note
