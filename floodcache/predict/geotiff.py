"""`predict`'s georeferenced rasters: the water mask and its probabilities.

Rows are written into part files as they become final (`PartWriter`: one per process that
segments a share of a scene's rows), then the parts are put together into one Cloud Optimized
GeoTIFF (`assemble`: tiled, deflate, overviews) with the input's CRS and transform and what
made it in its tags, written whole (`write_whole`). GDAL's block cache is held to
GDAL_CACHEMAX so that memory stays bounded whatever the scene's size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from floodcache.predict.tiles import NODATA, Strip
from floodcache.utils.atomic import replace_synced, temporary_name, write_whole

# GDAL's block cache, unless the user sets GDAL_CACHEMAX: ample for blocks 512 a side,
# bounded whatever the scene (GDAL's own default grows with the machine's RAM).
GDAL_CACHEMAX_MB = 256
BLOCK = 512  # tile side of the GeoTIFFs written
MASK_VALUES = f"1 water, 0 land, {NODATA} no data"
PROBABILITY_MAX = 254  # uint8 probabilities: P(water) x 254, rounded; 255 is no data


@dataclass(frozen=True)
class Raster:
    """One kind of output raster: its data type as stored and read, and its no-data value."""

    kind: str  # "mask" or "probability"
    dtype: str  # as GDAL stores and returns it
    nodata: float
    values: str  # what the values mean, for its tags
    nbits: int | None = None  # 16: float32 stored as 16-bit floats
    resampling: str = "nearest"  # its overviews'


MASK = Raster("mask", "uint8", NODATA, MASK_VALUES)
PROBABILITIES = {  # --probability-dtype -> its raster
    "uint8": Raster(
        "probability", "uint8", 255, f"P(water) x {PROBABILITY_MAX}, 255 no data", None, "average"
    ),
    "float16": Raster(
        "probability", "float32", float("nan"), "P(water), NaN no data", 16, "average"
    ),
}


@dataclass(frozen=True)
class Grid:
    """Where a scene's pixels lie: size, CRS (rasterio's) and affine transform."""

    height: int
    width: int
    crs: Any  # rasterio.crs.CRS (rasterio's types are not public)
    transform: Any  # affine.Affine

    @classmethod
    def of(cls, scene: Any) -> Grid:
        return cls(scene.height, scene.width, scene.crs, scene.transform)


def gdal_env():
    """rasterio's environment with GDAL's block cache bounded (a user's GDAL_CACHEMAX kept).
    GDAL sizes its cache when first used: enter it before a run reads or writes."""
    import rasterio

    return rasterio.Env(
        **({} if "GDAL_CACHEMAX" in os.environ else {"GDAL_CACHEMAX": GDAL_CACHEMAX_MB})
    )


def part_path(folder: Path, raster: Raster, start: int, stop: int) -> Path:
    return Path(folder) / f"{raster.kind}-{start:06d}-{stop:06d}.tif"


def values_of(strip: Strip, raster: Raster) -> np.ndarray:
    """A strip's hxW values as `raster` stores them."""
    if raster.kind == "mask":
        return strip.mask
    probability = np.negative(strip.logits)
    with np.errstate(over="ignore"):
        np.exp(probability, out=probability)
    probability += 1
    np.reciprocal(probability, out=probability)  # the sigmoid, in place: a strip is a scene wide
    if raster.dtype == "uint8":
        probability *= PROBABILITY_MAX
        values = np.rint(np.nan_to_num(probability, copy=False)).astype(np.uint8)
        values[~strip.valid] = raster.nodata
        return values
    probability[~strip.valid] = np.nan
    return probability


class PartWriter:
    """Writes the final strips of scene rows [start, stop) into part GeoTIFFs in `folder`,
    one per raster; each part appears whole when `close` is called."""

    def __init__(self, folder: Path, grid: Grid, start: int, stop: int, rasters: list[Raster]):
        import rasterio
        from affine import Affine

        self.start, self.stop = start, stop
        self.paths = [part_path(folder, raster, start, stop) for raster in rasters]
        self.rasters = rasters
        # one name per writer: a second run writing the same part never truncates this one's
        self.tmps = [temporary_name(path) for path in self.paths]
        self.files = []
        for raster, tmp in zip(rasters, self.tmps, strict=True):
            profile = dict(
                driver="GTiff",
                width=grid.width,
                height=stop - start,
                count=1,
                dtype=raster.dtype,
                nodata=raster.nodata,
                crs=grid.crs,
                transform=grid.transform @ Affine.translation(0, start),
                tiled=True,
                blockxsize=BLOCK,
                blockysize=BLOCK,
                compress="deflate",
                zlevel=1,
                bigtiff="if_safer",
            )
            self.files.append(rasterio.open(tmp, "w", **profile))

    def values(self, strip: Strip) -> list[np.ndarray]:
        """A strip's values for each part (`write` takes them)."""
        return [values_of(strip, raster) for raster in self.rasters]

    def write(self, row: int, values: list[np.ndarray]) -> None:
        """hxW `values` of each part (`values`), from scene row `row` down."""
        from rasterio.windows import Window

        window = Window(0, row - self.start, values[0].shape[1], len(values[0]))
        for one, file in zip(values, self.files, strict=True):
            file.write(one, 1, window=window)

    def close(self, keep: bool = True) -> None:
        """Close the parts; put them in place if `keep`, else remove them."""
        for file, tmp, path in zip(self.files, self.tmps, self.paths, strict=True):
            file.close()
            if keep:
                replace_synced(tmp, path)
            else:
                tmp.unlink(missing_ok=True)


def assemble(
    out: Path, folder: Path, grid: Grid, raster: Raster, bounds: list[tuple[int, int]], tags: dict
) -> None:
    """The parts of `raster` for rows `bounds` ([start, stop) pairs covering the scene) ->
    one COG at `out`, written whole, with `tags`."""
    import rasterio.shutil

    vrt = Path(folder) / f"{raster.kind}.vrt"
    vrt.write_text(_vrt(grid, raster, folder, bounds, tags | {"values": raster.values}))
    options = dict(
        driver="COG",
        compress="DEFLATE",
        blocksize=BLOCK,
        overviews="AUTO",
        resampling=raster.resampling,
        bigtiff="IF_SAFER",
        num_threads=str(os.cpu_count() or 1),
    )
    if raster.nbits:
        options["nbits"] = raster.nbits
    with gdal_env():
        write_whole(
            out,
            lambda tmp: rasterio.shutil.copy(str(vrt), str(tmp), **options),
            fix="give --out a path in a folder you can write to, with room",
        )


def _vrt(grid: Grid, raster: Raster, folder: Path, bounds, tags: dict) -> str:
    """A GDAL VRT (XML) that shows the parts as one raster of the scene's grid."""
    t = grid.transform
    dtype = {"uint8": "Byte", "float32": "Float32"}[raster.dtype]
    nodata = "nan" if np.isnan(raster.nodata) else f"{raster.nodata:g}"
    sources = []
    for start, stop in bounds:
        name = escape(part_path(folder, raster, start, stop).name)
        size = f'xSize="{grid.width}" ySize="{stop - start}"'
        sources.append(
            f'<SimpleSource><SourceFilename relativeToVRT="1">{name}</SourceFilename>'
            f'<SourceBand>1</SourceBand><SrcRect xOff="0" yOff="0" {size}/>'
            f'<DstRect xOff="0" yOff="{start}" {size}/></SimpleSource>'
        )
    items = "".join(f"<MDI key={quoteattr(k)}>{escape(str(v))}</MDI>" for k, v in tags.items())
    return (
        f'<VRTDataset rasterXSize="{grid.width}" rasterYSize="{grid.height}">'
        f"<SRS>{escape(grid.crs.to_wkt())}</SRS>"
        f"<GeoTransform>{t.c!r}, {t.a!r}, {t.b!r}, {t.f!r}, {t.d!r}, {t.e!r}</GeoTransform>"
        f"<Metadata>{items}</Metadata>"
        f'<VRTRasterBand dataType="{dtype}" band="1"><NoDataValue>{nodata}</NoDataValue>'
        f"<Description>{raster.kind}</Description>{''.join(sources)}</VRTRasterBand>"
        "</VRTDataset>"
    )
