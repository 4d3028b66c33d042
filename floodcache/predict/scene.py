"""`predict` on a georeferenced scene: read window by window (`raster.Scene`), cut into
overlapping tiles (`tiles`), encoded in batches as `embed` encodes views, the decoder's logits
blended across the overlaps a tile row at a time, and written as a water mask COG on the
scene's grid, with its probabilities and its water polygons where asked (`geotiff`,
`polygons`). Memory holds a few tiles and one strip of the scene, whatever its size.

Tiles without data are not encoded. Tiles are read ahead in threads, and final rows written
in another thread, while SAM encodes. Under torchrun the processes share the scene's tile
rows, each writing its rows as a part, and rank 0 puts the parts together.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from floodcache.data.raster import Region, Scene
from floodcache.predict.config import SceneConfig
from floodcache.predict.geotiff import (
    MASK,
    PROBABILITIES,
    Grid,
    PartWriter,
    assemble,
    gdal_env,
)
from floodcache.predict.polygons import MaskSummary, summarize
from floodcache.predict.segmenter import Segmenter, warn_if_not_prompt_free
from floodcache.predict.tiles import RowBlender, TilePlan, plan_tiles
from floodcache.runtime import Group, joined
from floodcache.sam.preprocess import resize_to_input
from floodcache.utils.ahead import submit_ahead
from floodcache.utils.estimate import FirstPart

log = logging.getLogger(__name__)

READERS = 4  # threads reading tiles ahead of the encoder (GDAL and PIL free the GIL)
SUFFIXES = {"out": (".tif", ".tiff"), "probabilities": (".tif", ".tiff")}
SUFFIXES["polygons"] = (".geojson", ".json")


@dataclass
class SceneOutputs:
    """Where one scene's results go."""

    mask: Path
    polygons: Path | None = None
    probabilities: Path | None = None

    def named(self) -> dict[str, Path]:
        """The outputs asked for, by the option that names them."""
        named = {"out": self.mask, "polygons": self.polygons, "probabilities": self.probabilities}
        return {option: Path(path) for option, path in named.items() if path is not None}


@dataclass
class SceneResult:
    image: Path
    outputs: SceneOutputs
    summary: MaskSummary | None  # rank 0's (the one that writes the outputs)
    height: int
    width: int
    tiles: int
    decoded: int  # tiles with data: encoded and decoded (the others were not)
    reading: str  # the bands and scaling SAM saw
    precision: str  # the encoder's, resolved
    batch_size: int  # tiles per encoder call
    seconds: float = 0.0
    load_seconds: float = 0.0  # until SAM was ready on the device


def run_predict_scene(config: SceneConfig) -> SceneResult:
    """Segment one georeferenced raster (`config.image`) prompt-free into its outputs."""
    start = time.perf_counter()
    outputs = SceneOutputs(config.out, config.polygons, config.probabilities)
    check_outputs(outputs, config.overwrite)
    try:
        with (
            joined(config.model.device, config.model.precision) as runtime,
            gdal_env(),
            Scene(config.image, config.raster) as scene,
        ):
            check_scene(scene)
            plan = plan_tiles(scene.height, scene.width, config.tile, config.overlap)
            segmenter = Segmenter(config.model, runtime, images=plan.count)
            loaded = time.perf_counter() - start
            warn_if_not_prompt_free(segmenter.model, config.model.decoder)
            result = predict_scene(segmenter, config, scene, outputs, runtime.group)
    except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM: its tiles are not kept
        # read by the command layer's message (getattr), which KeyboardInterrupt does not declare
        vars(stop)["kept"] = (
            f"nothing of {config.image} is kept: a rerun segments it from its first tile"
        )
        raise
    result.seconds, result.load_seconds = time.perf_counter() - start, loaded
    return result


def check_outputs(outputs: SceneOutputs, overwrite: bool) -> None:
    """ValueError or FileExistsError naming the option to fix, before any work is done."""
    for option, path in outputs.named().items():
        if path.suffix.lower() not in SUFFIXES[option]:
            raise ValueError(f"--{option} {path}: give a path ending in {SUFFIXES[option][0]}")
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; choose another --{option}, or pass --overwrite")


def check_scene(scene: Scene) -> None:
    if scene.crs is None:
        raise ValueError(
            f"{scene.path} has no coordinate reference system: predict it as a photo "
            "(--out NAME.png), or georeference it first"
        )


def predict_scene(
    segmenter: Segmenter, config: SceneConfig, scene: Scene, outputs: SceneOutputs, group: Group
) -> SceneResult:
    """`scene` through `segmenter` into `outputs`, its tile rows shared among `group`."""
    plan = plan_tiles(scene.height, scene.width, config.tile, config.overlap)
    parts = outputs.mask.with_name(f".{outputs.mask.name}.parts")
    rasters = [MASK] + ([PROBABILITIES[config.probability_dtype]] if outputs.probabilities else [])
    if group.leader:
        shutil.rmtree(parts, ignore_errors=True)
        parts.mkdir(parents=True)
    group.barrier()
    try:
        rows = TileRows(segmenter, scene, plan, config.progress and group.leader)
        decoded = _segment_share(rows, parts, rasters, group)
        summary = None
        if group.leader:
            tags = scene_tags(segmenter, config, scene, plan)
            bounds = _row_bounds(plan, group)
            assemble(outputs.mask, parts, Grid.of(scene), MASK, bounds, tags)
            if outputs.probabilities:
                assemble(outputs.probabilities, parts, Grid.of(scene), rasters[1], bounds, tags)
            summary = summarize(outputs.mask, outputs.polygons, config.min_area)
    finally:
        if group.leader:
            shutil.rmtree(parts, ignore_errors=True)
    group.barrier()  # the outputs are in place before any process reports success
    size = scene.height, scene.width
    used = segmenter.precision, segmenter.batch_size
    return SceneResult(
        scene.path, outputs, summary, *size, plan.count, decoded, scene.describe(), *used
    )


def _row_bounds(plan: TilePlan, group: Group) -> list[tuple[int, int]]:
    """The scene rows [start, stop) each process writes, in rank order (none: left out)."""
    shares = [share for share in group.spans(len(plan.rows)) if len(share)]
    return [(plan.rows[share.start], plan.final_rows(share.stop - 1)[1]) for share in shares]


def _segment_share(rows: TileRows, parts: Path, rasters: list, group: Group) -> int:
    """This process's tile rows into its part files (`rasters`, in the folder `parts`) ->
    the tiles decoded by all processes."""
    plan = rows.plan
    mine = group.spans(len(plan.rows))[group.rank]
    decoded = 0
    if len(mine):
        start, stop = plan.rows[mine.start], plan.final_rows(mine.stop - 1)[1]
        writer = PartWriter(parts, Grid.of(rows.scene), start, stop, rasters)
        try:
            decoded = rows.segment(mine.start, mine.stop, writer)
        except BaseException:
            writer.close(keep=False)
            raise
        writer.close()
    return sum(group.gather(decoded))


def scene_tags(segmenter: Segmenter, config: SceneConfig, scene: Scene, plan: TilePlan) -> dict:
    """What made a scene's outputs, for their GeoTIFF tags."""
    record = segmenter.model.run_record
    return {
        "software": "floodcache predict",
        "source": scene.path.name,
        "decoder": str(config.model.decoder),
        "decoder_sha256": segmenter.model.sha256,
        "model_type": record.model_type,
        "checkpoint_sha256": record.checkpoint_sha256,
        "precision": segmenter.precision,
        "tile": config.tile,
        "overlap": config.overlap,
        "tiles": plan.count,
        "bands": ",".join(map(str, scene.bands)),
        "scale": scene.stretch.describe(),
        "threshold": "blended decoder logits > 0 (SAM's mask threshold)",
    }


@dataclass
class TileRead:
    """A tile as read: SAM's input (None for a tile without data) and its valid pixels."""

    tile: Region
    resized: np.ndarray | None  # hxwx3 uint8 at SAM's input size
    valid: np.ndarray  # HxW bool


class TileRows:
    """Tile rows of a scene through SAM: read ahead, encoded in batches, blended, written."""

    def __init__(self, segmenter: Segmenter, scene: Scene, plan: TilePlan, progress: bool):
        self.segmenter, self.scene, self.plan = segmenter, scene, plan
        self.progress = progress
        self.decoded = 0

    def segment(self, first: int, stop: int, parts: PartWriter) -> int:
        """Tile rows first..stop-1 into `parts`: each final strip from the scene row where
        tile row `first` starts, in order, written in a writer thread. Returns the tiles
        decoded.

        The tile row before `first` is segmented too (not written): its logits blend into
        the first rows."""
        begin = max(first - 1, 0)
        self.blender = RowBlender(self.plan, begin)
        self.owned_from = self.plan.rows[first]
        tiles = [tile for i in range(begin, stop) for tile in self.plan.row_tiles(i)]
        cpus = os.cpu_count() or 1
        self.bar = tqdm(
            total=len(tiles), unit="tile", desc=self.scene.path.name, disable=not self.progress
        )
        self.writing: deque[Future] = deque()
        cpu = self.segmenter.device.type == "cpu"  # said once the first tile row is blended
        self.estimate = FirstPart("tile", len(tiles), cpu, part=len(self.plan.cols))
        with (
            ThreadPoolExecutor(min(READERS, cpus), "scene-reader") as readers,
            ThreadPoolExecutor(1, "scene-writer") as self.writer,
        ):
            self.parts, pending = parts, []  # tiles read, not yet blended
            ahead = 2 * self.segmenter.batch_size
            reading = functools.partial(_read_tile, self.scene)
            for _, read in submit_ahead(readers, reading, tiles, ahead):
                pending.append(read.result())
                encodable = sum(r.resized is not None for r in pending)
                # a batch to encode, or many tiles without data (their rows can be finished)
                if encodable >= self.segmenter.batch_size or len(pending) >= 2 * ahead:
                    self._blend(pending)
                    pending = []
            self._blend(pending)
            while self.writing:
                self.writing.popleft().result()
        self.bar.close()
        return self.decoded

    def _blend(self, reads: list[TileRead]) -> None:
        """Decode the tiles with data among `reads` in one batch, blend every one in order,
        and hand each tile row's final strip to the writer as the row completes."""
        images = [(read.resized, read.valid.shape) for read in reads if read.resized is not None]
        made = iter(self.segmenter.logits(images) if images else [])
        self.decoded += len(images)
        for read in reads:
            self.blender.add(read.tile, None if read.resized is None else next(made), read.valid)
            self.bar.update()
            if line := self.estimate.add(1):
                log.info("predict: %s: %s", self.scene.path.name, line)
            if read.tile.col == self.plan.cols[-1]:
                strip = self.blender.finish_row()
                if strip.row >= self.owned_from:
                    self._hand_over(strip)

    def _hand_over(self, strip) -> None:
        """As the parts' values (uint8, not float32 logits) to the writer thread, with one
        strip at most waiting: a strip is a scene wide."""
        values = self.parts.values(strip)
        while self.writing and (self.writing[0].done() or len(self.writing) > 1):
            self.writing.popleft().result()  # a failed write raises here
        self.writing.append(self.writer.submit(self.parts.write, strip.row, values))


def _read_tile(scene: Scene, tile: Region) -> TileRead:
    pixels, valid = scene.read(tile)
    resized = resize_to_input(pixels) if valid.any() else None
    return TileRead(tile, resized, valid)
