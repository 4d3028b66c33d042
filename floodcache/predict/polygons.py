"""A finished water mask, read strip by strip: its water and data areas in square metres, and
its water as GeoJSON polygons (RFC 7946: WGS 84 longitude/latitude, exterior rings
counter-clockwise), streamed to the file as each polygon is complete.

Areas are planar in a projected CRS (its linear unit converted to metres), geodesic on the
WGS 84 ellipsoid for a geographic one. Polygons are traced on pixel edges (4-connected water),
a strip at a time; a polygon that reaches a strip's last row waits for the next strip, where
the parts that share an edge are merged, so no polygon is cut at a strip boundary.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from floodcache.predict.geotiff import Grid, gdal_env
from floodcache.utils.atomic import write_whole

STRIP_ROWS = 1024  # rows of the mask read at a time
DECIMALS = 7  # of longitude and latitude in the GeoJSON: about a centimetre


@dataclass
class MaskSummary:
    """What a water mask holds."""

    water_m2: float = 0.0
    data_m2: float = 0.0  # of pixels with data
    water_pixels: int = 0
    data_pixels: int = 0
    polygons: int = 0  # written (those of at least min_area)
    polygons_written: bool = False  # whether polygons were asked for and written

    @property
    def water_fraction(self) -> float:
        """Of the pixels with data."""
        return self.water_pixels / self.data_pixels if self.data_pixels else 0.0


class Areas:
    """Square metres of pixels and of pixel-coordinate polygons on a scene's grid."""

    def __init__(self, grid: Grid):
        from pyproj import Geod, Transformer

        self.grid = grid
        self.to_wgs84 = Transformer.from_crs(grid.crs.to_wkt(), "EPSG:4326", always_xy=True)
        self.geod = Geod(ellps="WGS84")
        self.geographic = grid.crs.is_geographic
        if not self.geographic:
            unit = grid.crs.linear_units_factor[1]
            self.pixel_m2 = abs(grid.transform.determinant) * unit * unit

    def of_rows(self, start: int, stop: int) -> np.ndarray:
        """m2 of one pixel of each row start..stop-1 (in the middle column)."""
        if not self.geographic:
            return np.full(stop - start, self.pixel_m2)
        import shapely

        rows, middle = np.arange(start, stop), self.grid.width // 2
        return self.of_pixels(shapely.box(middle, rows, middle + 1, rows + 1))

    def of_pixels(self, polygons: np.ndarray) -> np.ndarray:
        """m2 of each of an array of polygons in pixel coordinates (x: column, y: row)."""
        import shapely

        if not self.geographic:
            return shapely.area(polygons) * self.pixel_m2
        return np.array(
            [abs(self.geod.geometry_area_perimeter(p)[0]) for p in self.wgs84(polygons)]
        )

    def wgs84(self, polygons: np.ndarray) -> np.ndarray:
        """An array of polygons in pixel coordinates -> longitude/latitude (DECIMALS), each
        exterior counter-clockwise."""
        import shapely

        t = self.grid.transform

        def to_wgs84(xy: np.ndarray) -> np.ndarray:
            x = t.a * xy[:, 0] + t.b * xy[:, 1] + t.c
            y = t.d * xy[:, 0] + t.e * xy[:, 1] + t.f
            return np.round(np.column_stack(self.to_wgs84.transform(x, y)), DECIMALS)

        return shapely.orient_polygons(shapely.transform(polygons, to_wgs84))


def summarize(mask: Path, polygons: Path | None = None, min_area: float = 0.0) -> MaskSummary:
    """Read the water mask `mask` strip by strip -> its MaskSummary; with `polygons`, write its
    water polygons of at least `min_area` m2 there as GeoJSON, whole."""
    import rasterio

    with gdal_env(), rasterio.open(mask) as dataset:
        grid = Grid(dataset.height, dataset.width, dataset.crs, dataset.transform)
        areas = Areas(grid)
        summary = MaskSummary()

        def strips() -> Iterator[tuple[int, np.ndarray]]:
            for start in range(0, grid.height, STRIP_ROWS):
                stop = min(start + STRIP_ROWS, grid.height)
                values = dataset.read(1, window=((start, stop), (0, grid.width)))
                _count(summary, values, areas.of_rows(start, stop))
                yield start, values

        if polygons is None:
            for _ in strips():
                pass
            return summary
        fix = "give --polygons a path in a folder you can write to, with room"
        write_whole(
            polygons, lambda tmp: _write_geojson(tmp, strips(), areas, min_area, summary), fix
        )
        summary.polygons_written = True
    return summary


def _count(summary: MaskSummary, values: np.ndarray, row_m2: np.ndarray) -> None:
    water = np.count_nonzero(values == 1, axis=1)
    data = np.count_nonzero(values != 255, axis=1)
    summary.water_pixels += int(water.sum())
    summary.data_pixels += int(data.sum())
    summary.water_m2 += float(water @ row_m2)
    summary.data_m2 += float(data @ row_m2)


def _write_geojson(tmp: Path, strips, areas: Areas, min_area: float, summary: MaskSummary):
    import shapely

    with tmp.open("w") as out:
        out.write('{"type": "FeatureCollection", "features": [')
        for polygons in water_polygons(strips, areas.grid.height):
            m2 = areas.of_pixels(polygons)
            kept = m2 >= min_area
            for geometry, area in zip(
                shapely.to_geojson(areas.wgs84(polygons[kept])), m2[kept], strict=True
            ):
                properties = json.dumps({"area_m2": round(float(area), 1)})
                feature = (
                    f'{{"type": "Feature", "properties": {properties}, "geometry": {geometry}}}'
                )
                out.write(("," if summary.polygons else "") + "\n" + feature)
                summary.polygons += 1
        out.write("\n]}\n")


def water_polygons(strips: Iterable[tuple[int, np.ndarray]], height: int) -> Iterator[np.ndarray]:
    """Arrays of shapely polygons in pixel coordinates: the water (value 1) of (start row,
    hxW values) strips that cover `height` rows in order; each polygon complete, never cut at
    a strip boundary (one that reaches a strip's last row waits for the next strip)."""
    import shapely
    from rasterio.features import shapes
    from shapely.geometry import shape

    waiting = _array([])  # polygons that reach the last strip's bottom row
    for start, values in strips:
        stop = start + len(values)
        water = (values == 1).astype(np.uint8)
        found = _array([shape(g) for g, _ in shapes(water, mask=water > 0, connectivity=4)])
        found = shapely.transform(found, lambda xy, start=start: xy + (0, start))
        if len(waiting):
            touching = shapely.bounds(found)[:, 1] <= start
            # simplify(0): no vertex left on a straight edge where two parts were joined
            joined = shapely.get_parts(shapely.union_all([*waiting, *found[touching]]))
            found = np.concatenate([shapely.simplify(joined, 0), found[~touching]])
        waits = (shapely.bounds(found)[:, 3] >= stop) & (stop < height)
        waiting = found[waits]
        yield found[~waits]
    yield waiting


def _array(polygons: list) -> np.ndarray:
    """A numpy array of shapely geometries (shapely's vectorized functions take them)."""
    array = np.empty(len(polygons), dtype=object)
    array[:] = polygons
    return array
