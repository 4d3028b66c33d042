"""Georeferenced rasters (GeoTIFF, COG, any file GDAL reads with a coordinate reference system):
opened once, read window by window as SAM's HxWx3 uint8 RGB, with which pixels hold data.

Three bands are read (`RasterReading.bands`; one band is repeated as grey) and scaled to 8 bits
by a stated rule (`SCALES`, `Stretch`), the same for every window of a scene. A pixel holds
data unless GDAL's masks say otherwise (a nodata value, an alpha band, an internal mask) for
every band read, or its value is not a number; pixels without data read as black.

rasterio (GDAL) is imported when first used, so that `--help` and photo data sets never load it.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

SCALES = {  # --scale: how a scene's values become 0..255
    "auto": "uint8 as it is; any other type by `percentile`",
    "percentile": "per band, the scene's low..high percentiles of its pixels with data -> 0..255",
    "dtype": "the data type's range -> 0..255 (uint16: 0..65535, float: 0..1)",
}
# The percentiles are taken over the scene read at most this many pixels a side (GDAL's
# overviews where the file has them): the scene's statistics in bounded memory.
SAMPLE_SIDE = 1024


class UnreadableRaster(ValueError):
    """GDAL cannot open or read a raster; the message names the file and the cause."""


class Region(NamedTuple):
    """A window of a raster, in pixels: top row, left column, height, width."""

    row: int
    col: int
    height: int
    width: int


@dataclass(frozen=True)
class RasterReading:
    """Which bands of a raster SAM sees, and how their values become 8 bits."""

    # 1-based band numbers: three (red, green, blue) or one (grey). Default: the bands whose
    # colour interpretation is red, green and blue, else 1,2,3 (1 for a one-band raster).
    bands: tuple[int, ...] | None = None
    scale: str = "auto"  # a key of SCALES
    percentiles: tuple[float, float] = (2.0, 98.0)  # the `percentile` rule's low and high

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ValueError(f"--scale must be one of {', '.join(SCALES)}, not {self.scale!r}")
        if self.bands is not None and (len(self.bands) not in (1, 3) or min(self.bands) < 1):
            raise ValueError(
                f"--bands {','.join(map(str, self.bands))}: give three band numbers from 1 "
                "(red, green, blue, e.g. --bands 3,2,1) or one (shown as grey)"
            )
        low, high = self.percentiles
        if not 0 <= low < high <= 100:
            raise ValueError(f"percentiles must be 0 <= low < high <= 100, not {low}, {high}")


@dataclass(frozen=True)
class Stretch:
    """Per band: values `low`..`high` -> 0..255 (clipped, rounded); `rule` says where from."""

    rule: str
    low: tuple[float, ...]
    high: tuple[float, ...]
    identity: bool = False  # uint8 read as it is: no arithmetic

    def apply(self, values: np.ndarray) -> np.ndarray:
        """3xHxW band values -> HxWx3 uint8 (NaN -> 0)."""
        if self.identity:
            return np.ascontiguousarray(values.transpose(1, 2, 0))
        low = np.array(self.low, np.float64)[:, None, None]
        span = np.maximum(np.array(self.high, np.float64)[:, None, None] - low, 1e-12)
        scaled = np.rint(np.clip((values - low) * (255.0 / span), 0, 255))
        return np.nan_to_num(scaled).astype(np.uint8).transpose(1, 2, 0).copy()

    def describe(self) -> str:
        if self.identity:
            return self.rule
        ranges = ", ".join(
            f"[{lo:.6g}, {hi:.6g}]" for lo, hi in zip(self.low, self.high, strict=True)
        )
        return f"{self.rule}: {ranges} -> 0..255"


@dataclass
class Scene:
    """An open raster and the reading chosen for it; `read` serves any thread (GDAL
    datasets are not shared between threads: each thread opens its own)."""

    path: Path
    reading: RasterReading = field(default_factory=RasterReading)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self._local = threading.local()
        self._opened: list = []
        self._lock = threading.Lock()
        dataset = self._dataset()
        self.width, self.height, self.count = dataset.width, dataset.height, dataset.count
        self.crs, self.transform = dataset.crs, dataset.transform
        self.dtype = np.dtype(dataset.dtypes[0])
        self.bands = pick_bands(dataset, self.reading.bands, self.path)
        self.stretch = self._stretch(dataset)

    def __enter__(self) -> Scene:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            for dataset in self._opened:
                dataset.close()
            self._opened.clear()
        self._local = threading.local()

    def read(self, region: Region) -> tuple[np.ndarray, np.ndarray]:
        """(hxwx3 uint8 RGB, hxw bool: the pixel holds data) of `region`; no data -> black."""
        values, valid = self._read(region)
        pixels = self.stretch.apply(values)
        pixels[~valid] = 0
        return pixels, valid

    def _read(self, region: Region, out_shape: tuple[int, int] | None = None):
        """(3xhxw band values, hxw bool valid) of `region`, at `out_shape` if given."""
        from rasterio.windows import Window

        window = Window(region.col, region.row, region.width, region.height)
        unique = sorted(set(self.bands))
        shape = None if out_shape is None else (len(unique), *out_shape)
        dataset = self._dataset()
        try:
            data = dataset.read(unique, window=window, out_shape=shape)
            masks = dataset.read_masks(unique, window=window, out_shape=shape)
        except Exception as error:  # rasterio raises its own and GDAL's error types
            raise UnreadableRaster(
                f"{self.path}: cannot read {region} ({type(error).__name__}: {error}); "
                "replace the file, or remove it from the folder"
            ) from error
        valid = (masks > 0).any(axis=0)
        values = data[[unique.index(band) for band in self.bands]]
        if values.dtype.kind == "f":
            valid &= np.isfinite(values).all(axis=0)
        return values, valid

    def _stretch(self, dataset) -> Stretch:
        rule = self.reading.scale
        if rule == "auto":
            rule = "dtype" if self.dtype == np.uint8 else "percentile"
        if rule == "dtype":
            if self.dtype == np.uint8:
                return Stretch("uint8 as it is", (0.0,) * 3, (255.0,) * 3, identity=True)
            low, high = dtype_range(self.dtype)
            return Stretch(f"{self.dtype} range", (low,) * 3, (high,) * 3)
        low, high = self.reading.percentiles
        factor = max(1.0, max(self.height, self.width) / SAMPLE_SIDE)
        shape = (max(1, round(self.height / factor)), max(1, round(self.width / factor)))
        values, valid = self._read(Region(0, 0, self.height, self.width), shape)
        picked = values[:, valid].astype(np.float64)
        if picked.shape[1] == 0:
            return Stretch(
                f"percentile {low:g}-{high:g} (no pixel with data)", (0.0,) * 3, (1.0,) * 3
            )
        lows, highs = np.percentile(picked, [low, high], axis=1)
        return Stretch(
            f"percentile {low:g}-{high:g} per band over the raster",
            tuple(map(float, lows)),
            tuple(map(float, highs)),
        )

    def _dataset(self):
        dataset = getattr(self._local, "dataset", None)
        if dataset is None:
            dataset = open_raster(self.path)
            with self._lock:
                self._opened.append(dataset)
            self._local.dataset = dataset
        return dataset

    def describe(self) -> str:
        """What SAM is shown of the scene: for logs and the outputs' metadata."""
        bands = ",".join(map(str, self.bands))
        return f"bands {bands} of {self.count} ({self.dtype}), {self.stretch.describe()}"


def dtype_range(dtype: np.dtype) -> tuple[float, float]:
    """The values a data type spans: an integer type's limits, 0..1 for floats (reflectance)."""
    if dtype.kind == "f":
        return 0.0, 1.0
    info = np.iinfo(dtype)
    return float(info.min), float(info.max)


def pick_bands(dataset: Any, bands: tuple[int, ...] | None, path: Path) -> tuple[int, int, int]:
    """The three 1-based band numbers to read as R, G, B (one band given: it, three times)."""
    count = dataset.count
    if bands is None:
        names = [interp.name for interp in dataset.colorinterp]
        if {"red", "green", "blue"} <= set(names):
            bands = tuple(names.index(colour) + 1 for colour in ("red", "green", "blue"))
        elif count >= 3:
            bands = (1, 2, 3)
        elif count == 1:
            bands = (1,)
        else:
            raise ValueError(f"{path} has {count} bands: say which to read, e.g. --bands 1")
    beyond = [band for band in bands if band > count]
    if beyond:
        raise ValueError(
            f"{path} has {count} bands, so --bands {','.join(map(str, bands))} names band "
            f"{beyond[0]} it does not have: give band numbers from 1 to {count}"
        )
    return (bands[0],) * 3 if len(bands) == 1 else (bands[0], bands[1], bands[2])


def check_bands(path: Path, reading: RasterReading) -> None:
    """ValueError naming the file and the fix where `reading`'s bands do not fit its raster
    (UnreadableRaster where GDAL cannot open it): a header read, before any work."""
    with open_raster(path) as dataset:
        pick_bands(dataset, reading.bands, path)


def open_raster(path: Path):
    """rasterio's dataset of `path`; UnreadableRaster naming the file where GDAL cannot."""
    import rasterio

    # Photos are probed for a CRS too (`georeferenced`): one without is no news. A filter
    # for the process, since the probes run in threads (catch_warnings is not thread-safe).
    warnings.filterwarnings("ignore", category=rasterio.errors.NotGeoreferencedWarning)
    try:
        return rasterio.open(path)
    except rasterio.errors.RasterioIOError as error:
        raise UnreadableRaster(
            f"{path}: cannot be read as a raster ({error}); replace the file, or remove it"
        ) from error
    except UnicodeEncodeError as error:  # GDAL takes UTF-8 names: a name that is not has none
        shown = str(path).encode("utf-8", "backslashreplace").decode()
        raise UnreadableRaster(
            f"{shown}: GDAL cannot open a file whose name is not UTF-8; rename it"
        ) from error


def georeferenced(path: Path) -> bool:
    """Whether GDAL opens `path` and finds a coordinate reference system in it."""
    return georeference(path) is not None


@dataclass(frozen=True)
class Georeference:
    """Where a raster lies: its CRS, its affine transform and its size."""

    crs: Any  # rasterio.crs.CRS (rasterio's types are not public)
    transform: tuple[float, ...]  # a, b, c, d, e, f of the affine pixel -> CRS transform
    size: tuple[int, int]  # (H, W)

    def differences(self, other: Georeference) -> list[str]:
        """What differs between the two, in words (empty when they lie on the same grid)."""
        found = []
        if self.crs != other.crs:
            found.append(f"CRS {self.crs.to_string()} vs {other.crs.to_string()}")
        if not np.allclose(self.transform, other.transform, rtol=1e-9, atol=1e-9):
            mine, theirs = (_numbers(t) for t in (self.transform, other.transform))
            found.append(f"transform ({mine}) vs ({theirs})")
        return found


def _numbers(values) -> str:
    return ", ".join(f"{value:.10g}" for value in values)


def georeference(path: Path) -> Georeference | None:
    """`path`'s Georeference, or None when it has no CRS or GDAL cannot open it.

    UnreadableRaster where ground control points alone locate it: it has a CRS but no grid
    to lay a mask on, and read as a photo its mask would lose where it lies."""
    try:
        dataset = open_raster(path)
    except UnreadableRaster:
        return None
    with dataset:
        if dataset.crs is None and dataset.gcps[0]:
            raise UnreadableRaster(
                f"{path}: located by ground control points alone, with no grid: warp it onto "
                f"one first (`gdalwarp {path} {Path(path).stem}_warped.tif`), then predict that"
            )
        if dataset.crs is None:
            return None
        return Georeference(dataset.crs, tuple(dataset.transform)[:6], dataset.shape)


def read_chip(path: Path, reading: RasterReading) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """A whole raster (a training chip) -> (HxWx3 uint8 RGB, notes), read as `Scene.read`
    reads a window; a note says how, unless it is 8-bit RGB read as it is
    (`decode.read_image`'s converted_mode)."""
    with Scene(path, reading) as scene:
        pixels, valid = scene.read(Region(0, 0, scene.height, scene.width))
        detail = f"raster: {scene.describe()}"
        as_it_is = scene.stretch.identity and scene.bands == (1, 2, 3) and scene.count == 3
    if not valid.all():
        detail += f"; {np.mean(~valid):.4f} of pixels without data, read as black"
    return pixels, [] if as_it_is and valid.all() else [("converted_mode", detail)]


def read_mask_values(path: Path) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """A raster mask's first band -> (HxW values, notes); pixels without data, and negative
    values (Sen1Floods11 marks them -1), become 0: never water."""
    dataset = open_raster(path)
    with dataset:
        try:
            values = dataset.read(1)
            valid = dataset.read_masks(1) > 0
        except Exception as error:  # rasterio raises its own and GDAL's error types
            raise UnreadableRaster(
                f"{path}: cannot read its first band ({type(error).__name__}: {error})"
            ) from error
    if values.dtype.kind == "f":
        valid &= np.isfinite(values)
    unknown = ~valid | (values < 0)
    notes = []
    if unknown.any():
        notes.append(
            (
                "converted_mode",
                f"raster: {np.mean(unknown):.4f} of pixels without "
                "data or negative, read as not water",
            )
        )
        values = np.where(unknown, 0, values)
    return values, notes
