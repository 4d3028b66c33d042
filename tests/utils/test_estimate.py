"""The time a long step announces before it runs, from what it measured."""

from __future__ import annotations

import pytest

from floodcache.utils.estimate import duration, estimate_line


@pytest.mark.parametrize(
    ("seconds", "said"),
    [(0.4, "0 s"), (40, "40 s"), (89, "89 s"), (600, "10 min"), (5400, "1 h 30 min")],
)
def test_durations_read_as_a_person_says_them(seconds, said):
    assert duration(seconds) == said


def test_the_estimate_scales_what_was_measured_and_says_so():
    line = estimate_line("view", 2, 25.0, 862, cpu=False)
    # 862 x 12.5 s = 10775 s
    assert (
        line == "about 3 h 00 min for the 862 views left (12.5 s a view, measured on the first 2)"
    )
    assert "GPU" not in line
    assert "GPU" in estimate_line("view", 2, 25.0, 862, cpu=True)
    assert "pipeline check" in estimate_line("view", 2, 25.0, 862, cpu=True)
