"""The time a long step announces before it runs, from what it measured."""

from __future__ import annotations

import pytest

from floodcache.utils.estimate import FirstPart, duration, estimate_line


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


def test_a_long_step_says_its_time_once_after_its_first_part_on_a_fake_clock():
    """A first tile row of 3 tiles took 30 s (fake clock): 9 tiles left, about 90 s."""
    now = [100.0]
    first = FirstPart("tile", 12, cpu=True, part=3, clock=lambda: now[0])
    now[0] = 130.0
    assert first.add(1) is None and first.add(1) is None  # the row is not done
    line = first.add(1)
    assert line == estimate_line("tile", 3, 30.0, 9, cpu=True)
    assert line.startswith("about 2 min for the 9 tiles left (10 s a tile, measured on the")
    assert first.add(1) is None  # said once
    assert "for the 1 image left" in estimate_line("image", 2, 8.0, 1, cpu=False)


def test_nothing_is_said_when_the_first_part_was_all_there_was():
    first = FirstPart("image", 2, cpu=False, clock=lambda: 0.0)
    assert first.add(2) is None and first.add(0) is None
