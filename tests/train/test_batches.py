"""Training batches: prompts made from the cached targets, on the water, skipped without it."""

from __future__ import annotations

import numpy as np

from floodcache.prompts import PROMPTS, PromptOptions
from floodcache.train.batches import make_batches


class FakeViews:
    """What make_batches reads of a split: low-res targets, ids, views and input sizes."""

    def __init__(self, targets: np.ndarray):
        self.targets = targets
        self.image_id = np.array([str(i) for i in range(len(targets))])
        self.view = np.zeros(len(targets), int)
        self.input_size = np.full((len(targets), 2), 1024)

    def __len__(self) -> int:
        return len(self.targets)


def test_views_without_water_are_skipped_for_oracle_prompts_only():
    targets = np.zeros((3, 256, 256), np.uint8)
    targets[0, 10:50, 20:80] = 1  # only view 0 has water
    for name, expected_skips in (("box", 2), ("point", 2), ("none", 0)):
        batches, skipped = make_batches(
            [PROMPTS[name]], FakeViews(targets), 0, 1, PromptOptions(), 8, True
        )
        assert skipped == expected_skips
        assert sum(len(index) for _, index, _ in batches) == 3 - expected_skips


def test_prompts_land_on_the_water_in_the_input_frame():
    """A low-res water pixel (row 10, col 20) maps to input pixels 40..43 x 80..83."""
    targets = np.zeros((1, 256, 256), np.uint8)
    targets[0, 10, 20] = 1
    batches, _ = make_batches([PROMPTS["box"]], FakeViews(targets), 0, 1, PromptOptions(), 8, False)
    x0, y0, x1, y1 = batches[0][2][0].box
    assert 80 <= x0 <= x1 <= 83 and 40 <= y0 <= y1 <= 43
