"""predict's GeoTIFFs: Cloud Optimized, on the scene's grid, saying what made them, and
probabilities that agree with the mask."""

from __future__ import annotations

import numpy as np
import pytest

from floodcache.predict.geotiff import MASK, PROBABILITY_MAX, Grid, PartWriter, part_path, values_of
from floodcache.predict.tiles import Strip
from floodcache.utils.hashing import sha256_file
from tests.rasters import GEO_SCENE, read_scene

pytestmark = pytest.mark.skipif(not GEO_SCENE.exists(), reason="needs ../shared/geo")


def test_the_mask_is_a_cog_that_says_what_made_it(geo_prediction):
    import rasterio

    config, _ = geo_prediction
    with rasterio.open(config.out) as mask:
        assert mask.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert mask.profile["tiled"] and mask.profile["compress"] == "deflate"
        assert mask.overviews(1) and (mask.count, mask.dtypes[0], mask.nodata) == (1, "uint8", 255)
        tags = mask.tags()
    assert tags["decoder_sha256"] == sha256_file(config.model.decoder / "decoder.pt")
    assert (tags["tile"], tags["overlap"], tags["bands"]) == ("512", "64", "1,2,3")
    assert tags["scale"] == "uint8 as it is" and tags["source"] == "RGB.byte.tif"
    assert tags["values"] == "1 water, 0 land, 255 no data"
    assert not list(config.out.parent.glob(".*"))  # no parts or temporary files left


def test_probabilities_agree_with_the_mask_on_the_same_grid(geo_prediction):
    import rasterio

    config, _ = geo_prediction
    with rasterio.open(config.out) as mask, rasterio.open(config.probabilities) as probability:
        assert (probability.crs, probability.transform) == (mask.crs, mask.transform)
        assert probability.tags(1, ns="IMAGE_STRUCTURE")["NBITS"] == "16"  # float16
        water, p = mask.read(1), probability.read(1)
    _, valid = read_scene()
    assert np.array_equal(np.isnan(p), ~valid)
    assert np.all(p[water == 1] >= 0.5) and np.all(p[water == 0] <= 0.5)


def test_uint8_probabilities_scale_to_254_and_keep_255_for_no_data():
    from floodcache.predict.geotiff import PROBABILITIES

    logits = np.array([[-50.0, 0.0, 50.0, np.nan]], np.float32)
    strip = Strip(0, logits, np.array([[True, True, True, False]]))
    assert values_of(strip, PROBABILITIES["uint8"]).tolist() == [[0, 127, PROBABILITY_MAX, 255]]
    assert strip.mask.tolist() == [[0, 0, 1, 255]]


def test_two_writers_of_one_part_never_share_a_temporary_file(tmp_path):
    """A second run writing the same part (here: given up) took over the first one's
    temporary file, one fixed name per part: the first then failed to put its part in place."""
    import rasterio
    from affine import Affine
    from rasterio.crs import CRS

    grid = Grid(8, 16, CRS.from_epsg(32618), Affine(10, 0, 500000, 0, -10, 4000000))
    first = PartWriter(tmp_path, grid, 0, 8, [MASK])
    first.write(0, [np.full((8, 16), 1, np.uint8)])
    second = PartWriter(tmp_path, grid, 0, 8, [MASK])
    second.write(0, [np.full((8, 16), 0, np.uint8)])
    second.close(keep=False)
    first.close()
    with rasterio.open(part_path(tmp_path, MASK, 0, 8)) as part:
        assert (part.read(1) == 1).all()
    assert [path.name for path in tmp_path.iterdir()] == ["mask-000000-000008.tif"]
