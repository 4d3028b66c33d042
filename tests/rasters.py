"""Georeferenced rasters for the tests: the real Landsat scene, and rasters made from it
(other types and bands, chips, mosaics)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.helpers import PROJECT

GEO_SCENE = PROJECT.parent / "shared" / "geo" / "RGB.byte.tif"  # Landsat, EPSG:32618, nodata 0


def write_raster(path: Path, values: np.ndarray, like: Path = GEO_SCENE, **profile) -> Path:
    """A GeoTIFF of CxHxW `values` on `like`'s grid (its CRS and transform), `profile`
    overriding (nodata=None: none)."""
    import rasterio

    with rasterio.open(like) as source:
        settings = source.profile | {"count": len(values), "dtype": values.dtype.name}
    settings |= {"height": values.shape[1], "width": values.shape[2]} | profile
    settings.pop("blockxsize", None), settings.pop("blockysize", None)
    with rasterio.open(path, "w", **settings) as out:
        out.write(values)
    return path


def read_scene(path: Path = GEO_SCENE) -> tuple[np.ndarray, np.ndarray]:
    """(CxHxW values, HxW bool: GDAL's dataset mask says the pixel holds data) of a raster."""
    import rasterio

    with rasterio.open(path) as source:
        return source.read(), source.dataset_mask() > 0


def write_chips(root: Path, count: int = 3) -> tuple[Path, Path]:
    """images/ and masks/ of Sen1Floods11-style chips cut from the real scene: 4 bands uint16
    (blue, green, red, near infrared), masks int16 (1 water, 0 land, -1 no data), each
    64 x 64 on its own part of the scene's grid."""
    import rasterio
    from rasterio.windows import Window, transform

    values, valid = read_scene()
    with rasterio.open(GEO_SCENE) as scene:
        grid = scene.transform
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for index in range(count):
        window = Window(300 + 64 * index, 300, 64, 64)
        cut = np.s_[:, 300:364, window.col_off : window.col_off + 64]
        red, green, blue = values[cut].astype(np.uint16) * 40 + 500
        bands = np.stack([blue, green, red, (red + blue) // 2])
        water = np.where(blue > red, 1, 0).astype(np.int16)
        water[valid[cut[1:]] == 0] = -1
        where = {"transform": transform(window, grid), "nodata": None}
        write_raster(root / "images" / f"chip_{index}.tif", bands, **where)
        write_raster(root / "masks" / f"chip_{index}.tif", water[None], **where)
    return root / "images", root / "masks"


def write_mosaic(path: Path, rows: int, cols: int, like: Path = GEO_SCENE) -> Path:
    """`rows` x `cols` copies of `like` side by side on one grid (its transform continued),
    written a copy at a time: a scene larger than memory need hold."""
    import rasterio
    from rasterio.windows import Window

    values, _ = read_scene(like)
    height, width = values.shape[1:]
    with rasterio.open(like) as source:
        settings = source.profile | {"height": rows * height, "width": cols * width}
    settings |= {"tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "deflate"}
    with rasterio.open(path, "w", **settings) as out:
        for row in range(rows):
            for col in range(cols):
                out.write(values, window=Window(col * width, row * height, width, height))
    return path
