"""`predict` on a folder of georeferenced scenes: each segmented as `scene` segments one, SAM
loaded once, into <stem>.tif in the output folder (and <stem>.geojson, <stem>.tif of
probabilities in theirs, where asked), with a table of each scene's water area.

A stopped run resumes: a scene whose outputs are all there is kept (outputs are written
whole). Under torchrun the processes share the scenes, each scene's outputs written by one of
them, and rank 0 writes the table.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from floodcache.data import pairs, raster
from floodcache.predict.config import SceneConfig
from floodcache.predict.geotiff import gdal_env
from floodcache.predict.output_folder import (
    SUMMARY,
    claim,
    read_summary,
    record_of,
    write_summary,
)
from floodcache.predict.polygons import MaskSummary, summarize
from floodcache.predict.scene import SceneOutputs, check_scene, predict_scene
from floodcache.predict.segmenter import Segmenter, warn_if_not_prompt_free
from floodcache.runtime import Group, Runtime, joined

log = logging.getLogger(__name__)

COLUMNS = ("image", "mask", "water_km2", "data_km2", "water_fraction", "polygons", "problem")


@dataclass
class ScenesResult:
    out: Path
    summary: Path  # SUMMARY in `out`
    predicted: int  # scenes segmented by this run (all processes')
    kept: list[str] = field(default_factory=list)  # scenes whose outputs were there already
    unreadable: list[str] = field(default_factory=list)  # files that are not usable scenes
    seconds: float = 0.0
    rank: int = 0  # under torchrun, which process this result is from


def run_predict_scenes(config: SceneConfig) -> ScenesResult:
    """Segment each georeferenced raster of the folder `config.image`, in natural order."""
    start = time.perf_counter()
    files, scenes, problems = _scenes(config)
    with joined(config.model.device, config.model.precision) as runtime, gdal_env():
        made, kept = _segment_all(config, scenes, files, problems, runtime)
    out = Path(config.out)
    failed = [name for name, row in made.items() if row.get("problem")]
    result = ScenesResult(out, out / SUMMARY, len(made) - len(failed))
    result.kept, result.unreadable = list(kept), list(problems) + failed
    result.seconds, result.rank = time.perf_counter() - start, runtime.group.rank
    return result


def _segment_all(config: SceneConfig, scenes: list[Path], files, problems, runtime: Runtime):
    """SAM loaded once; the scenes not done yet shared among the runtime's group; the table
    written (however the run ends, by a single process). -> (rows made, rows kept), by file
    name."""
    group = runtime.group
    segmenter = Segmenter(config.model, runtime, images=len(scenes))
    warn_if_not_prompt_free(segmenter.model, config.model.decoder)
    record = record_of(config, segmenter.model.folder, segmenter.model.sha256)
    outputs = {path.name: outputs_of(path, config) for path in scenes}
    _claim_together(group, config, record, outputs)
    out = Path(config.out)
    rows = {name: {"image": name, "problem": problem} for name, problem in problems.items()}
    kept = {} if config.overwrite else _kept(outputs, read_summary(out / SUMMARY))
    made: dict[str, dict] = {}
    try:
        for path in group.share([path for path in scenes if path.name not in kept]):
            made[path.name] = _segment(segmenter, config, path, outputs[path.name])
    finally:
        if group.world == 1:  # stopped part way: the scenes done are in the table
            _write_table(out, files, rows | kept | made)
    made = {name: row for share in group.gather(made) for name, row in share.items()}
    if group.leader:
        _write_table(out, files, rows | kept | made)
    group.barrier()
    return made, kept


def outputs_of(path: Path, config: SceneConfig) -> SceneOutputs:
    """Where the outputs of the scene `path` go: <stem>.tif, <stem>.geojson in their folders."""
    polygons = Path(config.polygons) / f"{path.stem}.geojson" if config.polygons else None
    probabilities = (
        Path(config.probabilities) / f"{path.stem}.tif" if config.probabilities else None
    )
    return SceneOutputs(Path(config.out) / f"{path.stem}.tif", polygons, probabilities)


def _scenes(config: SceneConfig) -> tuple[list[str], list[Path], dict[str, str]]:
    """The names of the folder's files in natural order; its georeferenced rasters, their
    bands checked; and the other files with what is wrong with them."""
    images, out = Path(config.image), Path(config.out)
    if not images.is_dir():
        raise FileNotFoundError(f"{images}: no such folder; give --image a folder of rasters")
    for option, folder in (("out", out), ("polygons", config.polygons)):
        if folder is not None and Path(folder).resolve() == images.resolve():
            raise ValueError(
                f"--{option} {folder}: outputs are named after the scenes; give another folder"
            )
    if config.probabilities and Path(config.probabilities).resolve() == out.resolve():
        raise ValueError("--probabilities: give another folder than --out (both hold <stem>.tif)")
    why = f"so both would get that stem's outputs in {out}: rename one, or move it elsewhere"
    by_stem = pairs.files_by_stem(images, why)
    scenes, problems = [], {}
    for stem in sorted(by_stem, key=pairs.natural_key):
        path = by_stem[stem]
        if not raster.georeferenced(path):
            problems[path.name] = "not a raster with a CRS: predict photos in a folder of their own"
            continue
        try:
            raster.check_bands(path, config.raster)
        except ValueError as error:  # one scene of other bands: listed, the others segmented
            problems[path.name] = str(error)
            continue
        scenes.append(path)
    if not scenes:
        first = f" ({next(iter(problems.items()))[1]})" if problems else ""
        raise FileNotFoundError(f"{images}: no georeferenced rasters to segment{first}")
    files = [by_stem[stem].name for stem in sorted(by_stem, key=pairs.natural_key)]
    return files, scenes, problems


def _claim_together(group: Group, config: SceneConfig, record: dict, outputs: dict) -> None:
    """The leader claims the output folder (`folder.claim`); every process learns its verdict."""
    problem = None
    if group.leader:
        paths = [path for scene in outputs.values() for path in scene.named().values()]
        try:
            claim(Path(config.out), record, paths, config.overwrite)
        except (FileExistsError, ValueError) as error:
            problem = error
    problem = group.from_leader(problem)
    if problem is not None:
        raise problem


def _kept(outputs: dict[str, SceneOutputs], earlier: dict[str, dict]) -> dict[str, dict]:
    """The rows of scenes whose outputs are all there (from an earlier run)."""
    kept = {}
    for name, scene in outputs.items():
        if all(path.is_file() for path in scene.named().values()):
            kept[name] = earlier.get(name) or _row(name, scene, summarize(scene.mask))
    return kept


def _segment(segmenter: Segmenter, config: SceneConfig, path: Path, outputs: SceneOutputs):
    """One scene of the folder -> its row (a problem row for a scene that cannot be read)."""
    try:
        with raster.Scene(path, config.raster) as scene:
            check_scene(scene)
            result = predict_scene(segmenter, config, scene, outputs, Group())
    except raster.UnreadableRaster as error:
        log.warning("%s", error)
        return {"image": path.name, "problem": str(error)}
    # one process here: the leader, which summarizes the scene
    assert result.summary is not None, "the leader summarizes its scene"
    return _row(path.name, outputs, result.summary)


def _row(name: str, outputs: SceneOutputs, summary: MaskSummary) -> dict:
    """A scene's row of the table (polygons: those written; blank when not asked for, or
    not known for outputs kept from a run whose table is lost)."""
    return {
        "image": name,
        "mask": outputs.mask.name,
        "water_km2": f"{summary.water_m2 / 1e6:.6f}",
        "data_km2": f"{summary.data_m2 / 1e6:.6f}",
        "water_fraction": f"{summary.water_fraction:.6f}",
        "polygons": summary.polygons if summary.polygons_written else "",
    }


def _write_table(out: Path, files: list[str], rows: dict) -> None:
    try:
        write_summary(out / SUMMARY, [rows[name] for name in files if name in rows], COLUMNS)
    except ValueError as error:  # a full disk, say: what stopped the run matters more
        log.warning("%s", error)
