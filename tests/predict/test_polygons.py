"""Water polygons as GeoJSON (RFC 7946) and areas in square metres, from a mask read strip by
strip: inside the scene, counter-clockwise, never cut at a strip boundary."""

from __future__ import annotations

import json

import numpy as np
import pytest
from shapely.geometry import shape

from floodcache.predict import polygons
from floodcache.predict.polygons import summarize, water_polygons
from tests.helpers import blobs
from tests.rasters import GEO_SCENE

pytestmark = pytest.mark.skipif(not GEO_SCENE.exists(), reason="needs ../shared/geo")


def test_polygons_lie_inside_the_scene_in_wgs84_with_their_areas(geo_prediction):
    import rasterio
    from rasterio.warp import transform_bounds

    config, result = geo_prediction
    collection = json.loads(config.polygons.read_text())
    assert "crs" not in collection  # RFC 7946: WGS 84 longitude, latitude, nothing else
    features = collection["features"]
    assert len(features) == result.summary.polygons > 0
    with rasterio.open(GEO_SCENE) as scene:
        west, south, east, north = transform_bounds(scene.crs, "EPSG:4326", *scene.bounds)
    for feature in features:
        outline = shape(feature["geometry"])
        x0, y0, x1, y1 = outline.bounds
        assert west <= x0 and x1 <= east and south <= y0 and y1 <= north
        assert outline.exterior.is_ccw and outline.is_valid
    # each polygon's area is in the scene's CRS (UTM, metres): all of them, the water's area
    total = sum(feature["properties"]["area_m2"] for feature in features)
    assert total == pytest.approx(result.summary.water_m2, rel=1e-6)


def test_small_polygons_are_left_out_above_min_area(geo_prediction, tmp_path):
    config, result = geo_prediction
    kept = summarize(config.out, tmp_path / "big.geojson", min_area=1e6)
    areas = [
        f["properties"]["area_m2"]
        for f in json.loads((tmp_path / "big.geojson").read_text())["features"]
    ]
    assert 0 < kept.polygons == len(areas) < result.summary.polygons and min(areas) >= 1e6
    assert kept.water_m2 == result.summary.water_m2  # the areas count every water pixel


def test_a_polygon_across_strip_boundaries_comes_out_whole():
    """Two blobs, read four rows at a time: the same polygons as read at once."""
    mask = np.zeros((70, 80), np.uint8)
    mask[3:67] = blobs()
    mask[20:22, 5:75] = 1  # a thin bridge joins them across many strips

    def strips(rows: int):
        return ((start, mask[start : start + rows]) for start in range(0, 70, rows))

    whole = sorted(p.area for p in np.concatenate(list(water_polygons(strips(70), 70))))
    cut = np.concatenate(list(water_polygons(strips(4), 70)))
    assert sorted(p.area for p in cut) == whole and len(cut) == 1
    assert cut[0].area == np.count_nonzero(mask)


def test_the_scene_read_in_strips_gives_the_same_polygons(geo_prediction, tmp_path, monkeypatch):
    """The scene's mask (718 rows) read 50 rows at a time: the same GeoJSON as at once."""
    config, result = geo_prediction
    monkeypatch.setattr(polygons, "STRIP_ROWS", 50)
    again = summarize(config.out, tmp_path / "strips.geojson")
    counts = ("polygons", "water_pixels", "data_pixels")
    assert [getattr(again, name) for name in counts] == [
        getattr(result.summary, name) for name in counts
    ]
    assert again.water_m2 == pytest.approx(result.summary.water_m2)
    features, whole = (
        sorted(
            (shape(f["geometry"]) for f in json.loads(path.read_text())["features"]),
            key=lambda outline: (outline.area, outline.centroid.x),
        )
        for path in (tmp_path / "strips.geojson", config.polygons)
    )
    assert all(a.equals(b) for a, b in zip(features, whole, strict=True))
