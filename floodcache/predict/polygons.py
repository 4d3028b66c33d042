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
from collections.abc import Iterator
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
        from shapely.geometry import box

        middle = self.grid.width // 2
        return np.array(
            [self.of_pixels(box(middle, row, middle + 1, row + 1)) for row in range(start, stop)]
        )

    def of_pixels(self, polygon) -> float:
        """m2 of a polygon in pixel coordinates (x: column, y: row)."""
        if not self.geographic:
            return polygon.area * self.pixel_m2
        area, _ = self.geod.geometry_area_perimeter(self.wgs84(polygon))
        return abs(area)

    def wgs84(self, polygon):
        """A polygon in pixel coordinates -> longitude/latitude, exterior counter-clockwise."""
        import shapely
        from shapely.affinity import affine_transform
        from shapely.geometry.polygon import orient

        t = self.grid.transform
        in_crs = affine_transform(polygon, [t.a, t.b, t.d, t.e, t.c, t.f])
        lonlat = shapely.transform(
            in_crs, lambda xy: np.column_stack(self.to_wgs84.transform(xy[:, 0], xy[:, 1]))
        )
        return orient(lonlat, sign=1.0)


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
    from shapely.geometry import mapping

    with tmp.open("w") as out:
        out.write('{"type": "FeatureCollection", "features": [\n')
        for polygon in water_polygons(strips, areas.grid.height):
            area = areas.of_pixels(polygon)
            if area < min_area:
                continue
            geometry = _rounded(mapping(areas.wgs84(polygon)))
            feature = {
                "type": "Feature",
                "properties": {"area_m2": round(area, 1)},
                "geometry": geometry,
            }
            out.write((",\n" if summary.polygons else "") + json.dumps(feature))
            summary.polygons += 1
        out.write("\n]}\n")


def water_polygons(strips, height: int) -> Iterator:
    """Shapely polygons in pixel coordinates of the water (value 1) of (start row, hxW values)
    strips that cover `height` rows in order; each complete, never cut at a strip boundary."""
    from rasterio.features import shapes
    from shapely import unary_union
    from shapely.geometry import shape

    waiting: list = []  # polygons that reach the last strip's bottom row
    for start, values in strips:
        stop = start + len(values)
        water = (values == 1).astype(np.uint8)
        found = [
            _shifted(shape(geometry), start)
            for geometry, _ in shapes(water, mask=water.astype(bool), connectivity=4)
        ]
        touching = [p for p in found if p.bounds[1] <= start]
        # simplify(0): no vertex left on a straight edge where two parts were joined
        merged = _parts(unary_union(waiting + touching).simplify(0)) if waiting else touching
        waiting = []
        for polygon in merged + [p for p in found if p.bounds[1] > start]:
            if polygon.bounds[3] >= stop and stop < height:
                waiting.append(polygon)
            else:
                yield polygon
    yield from waiting


def _shifted(polygon, rows: int):
    from shapely.affinity import translate

    return translate(polygon, yoff=rows) if rows else polygon


def _parts(geometry) -> list:
    return list(getattr(geometry, "geoms", [geometry]))


def _rounded(geometry: dict) -> dict:
    def rounded(coordinates):
        if isinstance(coordinates[0], int | float):
            return [round(value, DECIMALS) for value in coordinates]
        return [rounded(part) for part in coordinates]

    return {"type": geometry["type"], "coordinates": rounded(geometry["coordinates"])}
