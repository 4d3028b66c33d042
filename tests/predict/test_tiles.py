"""Tiles over a scene, and logits blended back tile row by tile row: no seam, no gap."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from floodcache.predict.tiles import NODATA, RowBlender, plan_tiles


def blend(field: np.ndarray, valid: np.ndarray, tile: int, overlap: int) -> list:
    """The strips `RowBlender` hands out when each tile's logits are `field`'s own (copied:
    the blender's are good until its next tile)."""
    plan = plan_tiles(*field.shape, tile, overlap)
    blender, strips = RowBlender(plan), []
    for index in range(len(plan.rows)):
        for t in plan.row_tiles(index):
            window = np.s_[t.row : t.row + t.height, t.col : t.col + t.width]
            blender.add(t, field[window], valid[window])
        strip = blender.finish_row()
        strips.append(replace(strip, logits=strip.logits.copy(), valid=strip.valid.copy()))
    return strips


@pytest.mark.parametrize(
    ("height", "width", "tile", "overlap"),
    [(300, 500, 128, 32), (97, 1000, 256, 0), (40, 50, 64, 16)],
)
def test_tiles_are_whole_cover_the_scene_and_overlap_at_least_as_asked(
    height, width, tile, overlap
):
    plan = plan_tiles(height, width, tile, overlap)
    covered = np.zeros((height, width), int)
    for index in range(len(plan.rows)):
        for t in plan.row_tiles(index):
            assert (t.height, t.width) == (min(tile, height), min(tile, width))
            covered[t.row : t.row + t.height, t.col : t.col + t.width] += 1
    assert covered.min() >= 1
    for starts, size in ((plan.rows, plan.tile_height), (plan.cols, plan.tile_width)):
        assert starts[0] == 0 and all(
            b - a <= size - overlap for a, b in zip(starts, starts[1:], strict=False)
        )


def test_blended_logits_show_no_seam_where_the_tiles_agree():
    """Each tile given its own window of one field: the blend is the field, to float rounding,
    whatever the overlap; rows come out once each, in order."""
    rng = np.random.default_rng(0)
    field = rng.normal(size=(300, 500)).astype(np.float32)
    valid = rng.random((300, 500)) > 0.1
    for overlap in (0, 17, 64):
        strips = blend(field, valid, 128, overlap)
        assert [s.row for s in strips] == sorted({s.row for s in strips}) and strips[0].row == 0
        logits = np.concatenate([s.logits for s in strips])
        np.testing.assert_allclose(logits, field, rtol=1e-5, atol=1e-6)
        mask = np.concatenate([s.mask for s in strips])
        assert np.array_equal(mask, np.where(valid, field > 0, NODATA))


def test_one_tile_over_the_whole_scene_gives_its_logits_unchanged():
    field = np.random.default_rng(1).normal(size=(90, 120)).astype(np.float32)
    (strip,) = blend(field, np.ones(field.shape, bool), 128, 32)
    assert np.array_equal(strip.logits, field)


def test_overlaps_are_weighted_towards_each_tile_centre():
    """Where two tiles disagree, the blend moves from one to the other across the overlap,
    with no step at either tile's edge."""
    plan = plan_tiles(100, 160, 100, 40)
    (first, second) = plan.row_tiles(0)
    blender = RowBlender(plan)
    blender.add(first, np.zeros((100, 100), np.float32), np.ones((100, 100), bool))
    blender.add(second, np.ones((100, 100), np.float32), np.ones((100, 100), bool))
    row = blender.finish_row().logits[50]
    shared = row[second.col : first.col + first.width]
    assert np.all(np.diff(shared) > 0) and shared[0] < 0.05 and shared[-1] > 0.95
    assert np.all(row[: second.col] == 0) and np.all(row[first.col + first.width :] == 1)


def test_a_tiling_that_cannot_work_names_the_option_to_fix():
    with pytest.raises(ValueError, match="--overlap must be from 0 to half of --tile .512"):
        plan_tiles(1000, 1000, 1024, 600)
    with pytest.raises(ValueError, match="--overlap"):
        plan_tiles(1000, 1000, 1024, -1)
    with pytest.raises(ValueError, match="--tile must be at least 32"):
        plan_tiles(1000, 1000, 16, 0)
