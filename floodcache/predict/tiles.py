"""A scene cut into overlapping tiles, and the decoder's logits blended back into one scene a
tile row at a time (`RowBlender`): memory holds a strip one tile high, never the scene.

Tiles are `tile` pixels a side at the scene's own resolution (SAM's 1024 input by default:
no resize), `overlap` pixels shared with each neighbour; the last tile of a row or column is
moved back to end at the scene's edge, so every tile is whole. Where tiles overlap, their
logits are averaged with weights that ramp up linearly over the overlap from each side that
has a neighbour, so no seam shows; a scene's outer edges keep weight 1, and one tile covering
the whole scene gives its logits unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from floodcache.data.raster import Region

MIN_TILE = 32  # the decoder's 256 low-res logits cover a tile: smaller tiles say nothing


@dataclass(frozen=True)
class TilePlan:
    """Where the tiles of a `height` x `width` scene lie."""

    height: int
    width: int
    tile: int
    overlap: int
    rows: tuple[int, ...]  # top row of each tile row
    cols: tuple[int, ...]  # left column of each tile column

    @property
    def tile_height(self) -> int:
        return min(self.tile, self.height)

    @property
    def tile_width(self) -> int:
        return min(self.tile, self.width)

    @property
    def count(self) -> int:
        return len(self.rows) * len(self.cols)

    def row_tiles(self, index: int) -> list[Region]:
        """The tiles of tile row `index`, left to right."""
        row = self.rows[index]
        return [Region(row, col, self.tile_height, self.tile_width) for col in self.cols]

    def final_rows(self, index: int) -> tuple[int, int]:
        """The scene rows [start, stop) that no tile row after `index` covers: final once
        tile row `index` is blended."""
        stop = self.rows[index + 1] if index + 1 < len(self.rows) else self.height
        return self.rows[index], stop

    def weights(self, index: int, tile: Region) -> np.ndarray:
        """hxw float32 blending weights of a tile of tile row `index`."""
        column = self.cols.index(tile.col)
        down = _ramp(tile.height, self.overlap, index > 0, index + 1 < len(self.rows))
        across = _ramp(tile.width, self.overlap, column > 0, column + 1 < len(self.cols))
        return down[:, None] * across[None, :]


def check_tiling(tile: int, overlap: int) -> None:
    """ValueError naming the option to fix unless `tile` and `overlap` make a tiling."""
    if tile < MIN_TILE:
        raise ValueError(f"--tile must be at least {MIN_TILE} pixels, not {tile}")
    if not 0 <= overlap <= tile // 2:
        raise ValueError(
            f"--overlap must be from 0 to half of --tile ({tile // 2} for --tile {tile}), "
            f"not {overlap}"
        )


def plan_tiles(height: int, width: int, tile: int, overlap: int) -> TilePlan:
    """The tiles of a scene: `tile` pixels a side (the scene's side where it is smaller),
    `overlap` pixels at least shared by neighbours."""
    check_tiling(tile, overlap)
    return TilePlan(
        height, width, tile, overlap, _starts(height, tile, overlap), _starts(width, tile, overlap)
    )


def _starts(length: int, tile: int, overlap: int) -> tuple[int, ...]:
    size = min(tile, length)
    return (*range(0, length - size, tile - overlap), length - size)


def _ramp(length: int, overlap: int, before: bool, after: bool) -> np.ndarray:
    """Weights along one side of a tile: rising over `overlap` pixels where a neighbour
    comes before, falling where one comes after, 1 elsewhere."""
    weights = np.ones(length, np.float32)
    rising = (np.arange(overlap, dtype=np.float32) + 1) / (overlap + 1)
    if before and overlap:
        weights[:overlap] = np.minimum(weights[:overlap], rising)
    if after and overlap:
        weights[length - overlap :] = np.minimum(weights[length - overlap :], rising[::-1])
    return weights


@dataclass
class Strip:
    """Final rows of a scene: [row, row + height) x the whole width."""

    row: int
    logits: np.ndarray  # hxW float32 blended logits (NaN where no tile was decoded)
    valid: np.ndarray  # hxW bool: the pixel holds data

    @property
    def mask(self) -> np.ndarray:
        """hxW uint8: 1 water (logit > 0, SAM's threshold), 0 land, NODATA without data."""
        water = np.nan_to_num(self.logits, nan=-1.0) > 0
        return np.where(self.valid, water, NODATA).astype(np.uint8)


NODATA = 255  # the water mask's value for pixels without data


class RowBlender:
    """Weighted logits of one tile row at a time, summed into a strip one tile high and the
    scene's width; `finish_row` hands out the rows no later tile row covers.

    A strip is a scene wide: the blend is made in place, and the buffers move on to the next
    tile row at the next `add`, not before, so that a finished strip needs no copy."""

    def __init__(self, plan: TilePlan, first_row: int = 0):
        self.plan, self.index = plan, first_row
        self.top = plan.rows[first_row]  # the scene row of the strip's first row
        shape = (plan.tile_height, plan.width)
        self.sums = np.zeros(shape, np.float32)
        self.weights = np.zeros(shape, np.float32)
        self.valid = np.zeros(shape, bool)
        self.finished = 0  # rows handed out by `finish_row`, still at the buffers' top

    def add(self, tile: Region, logits: np.ndarray | None, valid: np.ndarray) -> None:
        """A tile of the current tile row: its hxw float32 logits (None: not decoded, as a
        tile without data) and hxw bool valid pixels."""
        self._move_on()
        rows = slice(tile.row - self.top, tile.row - self.top + tile.height)
        cols = slice(tile.col, tile.col + tile.width)
        self.valid[rows, cols] |= valid
        if logits is not None:
            weights = self.plan.weights(self.index, tile)
            self.sums[rows, cols] += weights * logits
            self.weights[rows, cols] += weights

    def finish_row(self) -> Strip:
        """The final rows of the current tile row (`TilePlan.final_rows`), blended: views of
        the buffers, good until the next `add`. Moves on to the next tile row."""
        self._move_on()
        start, stop = self.plan.final_rows(self.index)
        done = stop - start
        sums, weights = self.sums[:done], self.weights[:done]
        np.divide(sums, weights, out=sums, where=weights > 0)
        np.copyto(sums, np.float32(np.nan), where=weights == 0)  # no tile decoded there
        self.index, self.top, self.finished = self.index + 1, stop, done
        return Strip(start, sums, self.valid[:done])

    def _move_on(self) -> None:
        """Drop the rows handed out: the rest of the buffers moves up to their top."""
        done, self.finished = self.finished, 0
        for buffer in (self.sums, self.weights, self.valid) if done else ():
            buffer[: len(buffer) - done] = buffer[done:]  # numpy copies overlapping rows safely
            buffer[len(buffer) - done :] = 0
