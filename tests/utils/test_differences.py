"""The refusal of a result made with other settings: what differs, in a few lines."""

from __future__ import annotations

import pytest

from floodcache.utils.differences import differences, refuse_if_different


def test_long_values_are_summed_up_and_the_first_difference_named():
    views = [["0", 0, "train"], ["1", 0, "val"]] * 400
    other = [list(view) for view in views]
    other[37][2] = "test"
    old = {"seed": 0, "views": views, "recipe": "x" * 3000}
    new = {"seed": 1, "views": other, "recipe": "y" * 3000}
    lines = differences(old, new)
    assert lines[1] == "seed: cache has 0, asked 1"
    assert lines[2].startswith("views: cache has 800 entries, asked 800 entries; first difference")
    assert "entry 37: ['1', 0, 'val'] against ['1', 0, 'test']" in lines[2]
    assert "recipe: cache has 'xxxx" in lines[0] and "sha256" in lines[0]
    assert all(len(line) < 200 for line in lines)


def test_refusal_names_what_and_the_fix_and_lets_equal_settings_pass():
    refuse_if_different({"a": 1}, {"a": 1}, "never", "never")
    with pytest.raises(FileExistsError, match=r"(?s)^out holds.*\n  a: has 1, asked 2\nfix it$"):
        refuse_if_different({"a": 1}, {"a": 2}, "out holds", "fix it", FileExistsError)
