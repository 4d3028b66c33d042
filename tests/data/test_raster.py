"""Georeferenced rasters read as SAM sees them: the bands chosen, values scaled by the stated
rule, and which pixels hold data, whatever the data type, band order or kind of mask."""

from __future__ import annotations

import numpy as np
import pytest

from floodcache.data.raster import (
    SAMPLE_SIDE,
    RasterReading,
    Region,
    Scene,
    UnreadableRaster,
    georeferenced,
)
from tests.rasters import GEO_SCENE, read_scene, write_raster

pytestmark = pytest.mark.skipif(not GEO_SCENE.exists(), reason="needs ../shared/geo")


def whole(path, **reading):
    """(HxWx3 uint8, HxW valid) of a whole raster, as predict reads a tile of it."""
    with Scene(path, RasterReading(**reading)) as scene:
        return scene.read(Region(0, 0, scene.height, scene.width))


@pytest.fixture(scope="module")
def scene_pixels():
    """The real uint8 scene as SAM sees it, and its dataset mask."""
    values, valid = read_scene()
    pixels, read_valid = whole(GEO_SCENE)
    assert np.array_equal(read_valid, valid)  # GDAL's nodata, the scene's border
    assert np.array_equal(pixels, np.where(valid[..., None], values.transpose(1, 2, 0), 0))
    return pixels, valid


def test_uint16_bands_in_another_order_show_sam_the_same_pixels(scene_pixels, tmp_path):
    values, _ = read_scene()
    noise = np.random.default_rng(0).integers(0, 65535, values.shape[1:], dtype=np.uint16)
    red, green, blue = (band.astype(np.uint16) * 257 for band in values)
    stack = np.stack([noise, blue, green, red, noise])  # a satellite's band order
    path = write_raster(tmp_path / "five.tif", stack)
    pixels, valid = whole(path, bands=(4, 3, 2), scale="dtype")
    assert np.array_equal(pixels, scene_pixels[0]) and np.array_equal(valid, scene_pixels[1])
    with pytest.raises(ValueError, match=r"five.tif has 5 bands, so --bands 6,3,2 .*1 to 5"):
        whole(path, bands=(6, 3, 2))


def test_float_reflectance_with_nan_for_no_data_shows_the_same_pixels(scene_pixels, tmp_path):
    values, valid = read_scene()
    reflectance = np.where(valid, values / 255.0, np.nan).astype(np.float32)
    path = write_raster(tmp_path / "float.tif", reflectance, nodata=None)
    pixels, read_valid = whole(path, scale="dtype")
    assert np.array_equal(pixels, scene_pixels[0]) and np.array_equal(read_valid, valid)


def test_an_alpha_band_or_an_internal_mask_says_which_pixels_hold_data(scene_pixels, tmp_path):
    import rasterio
    from rasterio.enums import ColorInterp

    values, valid = read_scene()
    alpha = np.concatenate([values, valid[None].astype(np.uint8) * 255])
    path = write_raster(tmp_path / "rgba.tif", alpha, nodata=None)
    with rasterio.open(path, "r+") as raster:
        raster.colorinterp = [
            ColorInterp.red,
            ColorInterp.green,
            ColorInterp.blue,
            ColorInterp.alpha,
        ]
    assert np.array_equal(whole(path)[1], valid)
    masked = write_raster(tmp_path / "masked.tif", values, nodata=None)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(masked, "r+") as raster:
        raster.write_mask(valid.astype(np.uint8) * 255)
    pixels, read_valid = whole(masked)
    assert np.array_equal(pixels, scene_pixels[0]) and np.array_equal(read_valid, valid)


def test_other_types_are_stretched_per_band_between_percentiles_of_the_scene(tmp_path):
    values, valid = read_scene()
    wide = np.where(valid, values.astype(np.uint16) * 10 + 100, 0).astype(np.uint16)
    path = write_raster(tmp_path / "wide.tif", wide)
    with Scene(path) as scene:  # scale auto: not uint8, so percentile 2-98
        assert max(scene.height, scene.width) <= SAMPLE_SIDE  # read whole for its statistics
        low, high = np.percentile(wide[:, valid].astype(np.float64), [2, 98], axis=1)
        np.testing.assert_allclose(scene.stretch.low, low)
        np.testing.assert_allclose(scene.stretch.high, high)
        assert "percentile 2-98" in scene.describe()
        pixels, _ = scene.read(Region(0, 0, scene.height, scene.width))
    expected = np.clip(
        np.rint((wide - low[:, None, None]) * 255 / (high - low)[:, None, None]), 0, 255
    ).transpose(1, 2, 0)
    assert np.array_equal(pixels[valid], expected[valid]) and not pixels[~valid].any()


def test_default_bands_follow_the_colour_interpretation(tmp_path):
    import rasterio
    from rasterio.enums import ColorInterp

    values, _ = read_scene()
    path = write_raster(tmp_path / "bgr.tif", values[::-1].copy())
    with rasterio.open(path, "r+") as raster:
        raster.colorinterp = [ColorInterp.blue, ColorInterp.green, ColorInterp.red]
    with Scene(path) as scene:
        assert scene.bands == (3, 2, 1)
    with Scene(write_raster(tmp_path / "grey.tif", values[:1])) as scene:
        assert scene.bands == (1, 1, 1)
    with pytest.raises(ValueError, match="two.tif has 2 bands: say which to read, e.g. --bands"):
        Scene(write_raster(tmp_path / "two.tif", values[:2]))


def test_readings_that_cannot_work_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="--bands 1,2: give three band numbers"):
        RasterReading(bands=(1, 2))
    with pytest.raises(ValueError, match="--scale must be one of auto, percentile, dtype"):
        RasterReading(scale="log")


def test_a_damaged_raster_names_the_file(tmp_path):
    values, _ = read_scene()
    path = write_raster(
        tmp_path / "cut.tif", values, compress="deflate", tiled=True, blockxsize=256, blockysize=256
    )
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert georeferenced(path)  # its header is whole
    with pytest.raises(UnreadableRaster, match="cut.tif: cannot read"):
        whole(path)
    text = tmp_path / "notes.tif"
    text.write_text("not a raster")
    assert not georeferenced(text) and not georeferenced(tmp_path / "missing.tif")


def test_a_raster_located_by_ground_control_points_alone_is_named_not_read_as_a_photo(
    tmp_path,
):
    """Such a GeoTIFF was segmented as a photo: its mask lost where it lies."""
    import rasterio
    from rasterio.control import GroundControlPoint
    from rasterio.crs import CRS

    path = tmp_path / "gcps.tif"
    points = [GroundControlPoint(0, 0, 5e5, 4e6), GroundControlPoint(0, 20, 5e5 + 600, 4e6)]
    points.append(GroundControlPoint(20, 0, 5e5, 4e6 - 600))
    with pytest.warns(rasterio.errors.NotGeoreferencedWarning):
        with rasterio.open(
            path, "w", driver="GTiff", height=20, width=20, count=3, dtype="uint8"
        ) as f:
            f.write(np.zeros((3, 20, 20), np.uint8))
            f.gcps = (points, CRS.from_epsg(32618))
    with pytest.raises(
        UnreadableRaster, match=f"{path}: located by ground control points .*gdalwarp"
    ):
        georeferenced(path)
