"""`predict` on a georeferenced scene: a mask on the scene's grid, nodata kept, tiles blended
as one, tiles without data skipped, memory bounded whatever the scene's size, the rows shared
by torchrun processes, and errors that leave nothing behind."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from dataclasses import replace
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli import main
from floodcache.data.raster import UnreadableRaster
from floodcache.predict import scene as scene_module
from floodcache.predict.config import ModelConfig, SceneConfig
from floodcache.predict.scene import run_predict_scene
from floodcache.predict.segmenter import Segmenter
from floodcache.prompts import NO_PROMPT
from floodcache.runtime import Runtime
from floodcache.sam.preprocess import resize_to_input
from floodcache.train.runs import RunRecord
from floodcache.utils import estimate
from tests.helpers import PROJECT, torchrun
from tests.rasters import GEO_SCENE, read_scene, write_mosaic, write_raster

pytestmark = pytest.mark.skipif(not GEO_SCENE.exists(), reason="needs ../shared/geo")


def read_mask(path):
    """(HxW values, CRS, transform) of a GeoTIFF predict wrote."""
    import rasterio

    with rasterio.open(path) as raster:
        return raster.read(1), raster.crs, raster.transform


def test_the_mask_lies_on_the_scene_grid_and_nodata_stays_nodata(geo_prediction):
    import rasterio

    config, result = geo_prediction
    mask, crs, transform = read_mask(config.out)
    with rasterio.open(GEO_SCENE) as scene:
        assert (crs, transform, mask.shape) == (scene.crs, scene.transform, scene.shape)
    _, valid = read_scene()
    assert np.array_equal(mask == 255, ~valid)  # every nodata pixel, and only those
    assert set(np.unique(mask[valid])) == {0, 1}  # water found, land too: not vacuous
    assert (result.tiles, result.decoded) == (4, 4)
    assert result.summary.water_pixels == np.count_nonzero(mask == 1)
    pixel_m2 = abs(transform.a * transform.e)
    assert result.summary.water_m2 == pytest.approx(result.summary.water_pixels * pixel_m2)


def test_tiled_with_overlap_equals_untiled_where_one_tile_covers_the_scene(
    geo_prediction, tmp_path
):
    """With the default tile (1024) one tile covers the 791 x 718 scene: its mask is the one
    predict makes of the scene as a photo (its no-data pixels black), on every pixel with data."""
    config, _ = geo_prediction
    whole = replace(
        config, out=tmp_path / "one.tif", polygons=None, probabilities=None, tile=1024, overlap=128
    )
    result = run_predict_scene(whole)
    assert result.tiles == 1
    values, valid = read_scene()
    photo = np.where(valid[..., None], values.transpose(1, 2, 0), 0).astype(np.uint8)
    segmenter = Segmenter(config.model, Runtime.resolve("cpu", "auto"))
    ((untiled, _),) = segmenter([(resize_to_input(photo), photo.shape[:2])], [NO_PROMPT])
    mask, _, _ = read_mask(whole.out)
    assert np.array_equal(mask[valid] == 1, untiled[valid])
    assert 0 < untiled[valid].mean() < 1


def test_tiles_without_data_are_not_encoded(geo_prediction, tmp_path, monkeypatch):
    """A strip of 11 tiles, data in the first alone: one tile encoded, and the tiles without
    data blended as they come, not held until a batch of tiles with data is full."""
    config, _ = geo_prediction
    values, _ = read_scene()
    strip = np.zeros((3, 256, 11 * 256), np.uint8)
    strip[:, :, :256] = values[:, 200:456, 250:506]
    path = write_raster(tmp_path / "strip.tif", strip)
    encoded, logits, held, blend = [], Segmenter.logits, [], scene_module.TileRows._blend

    def counted(self, images):
        encoded.append(len(images))
        return logits(self, images)

    def noted(self, reads):
        held.append(len(reads))
        return blend(self, reads)

    monkeypatch.setattr(Segmenter, "logits", counted)
    monkeypatch.setattr(scene_module.TileRows, "_blend", noted)
    small = replace(
        config,
        image=path,
        out=tmp_path / "strip_water.tif",
        polygons=None,
        probabilities=None,
        tile=256,
        overlap=0,
    )
    result = run_predict_scene(small)
    assert (result.tiles, result.decoded, sum(encoded)) == (11, 1, 1)
    assert max(held) <= 4 * result.batch_size < 11
    mask, _, _ = read_mask(small.out)
    assert np.array_equal(mask == 255, ~read_scene(path)[1]) and np.all(mask[:, 256:] == 255)


def test_errors_name_the_fix_and_leave_no_partial_file(geo_prediction, tmp_path):
    config, _ = geo_prediction
    mine = replace(
        config, out=tmp_path / "water.tif", polygons=tmp_path / "water.geojson", probabilities=None
    )
    with pytest.raises(ValueError, match=r"RGB.byte.tif has 3 bands, so --bands 4,3,2"):
        run_predict_scene(replace(mine, raster=replace(mine.raster, bands=(4, 3, 2))))
    values, _ = read_scene()
    damaged = write_raster(
        tmp_path / "cut.tif", values, compress="deflate", tiled=True, blockxsize=256, blockysize=256
    )
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    with pytest.raises(UnreadableRaster, match="cut.tif: cannot read"):
        run_predict_scene(replace(mine, image=damaged, tile=256, overlap=0))
    with pytest.raises(ValueError, match=r"--out .*water.png: give a path ending in .tif"):
        run_predict_scene(replace(mine, out=tmp_path / "water.png"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.tif"]  # nothing else written
    (tmp_path / "water.geojson").write_text("{}")
    with pytest.raises(FileExistsError, match="water.geojson exists; choose another --polygons"):
        run_predict_scene(mine)
    assert (tmp_path / "water.geojson").read_text() == "{}"


def test_predict_a_scene_from_the_command_line(tiny_checkpoint, finetuned_run, tmp_path):
    values, _ = read_scene()
    crop = write_raster(tmp_path / "crop.tif", values[:, 100:400, 200:500].copy())
    command = ["predict", "--checkpoint", str(tiny_checkpoint), "--decoder", str(finetuned_run)]
    command += ["--image", str(crop), "--out", str(tmp_path / "water.tif")]
    clicked = CliRunner().invoke(main, [*command, "--point", "10,10"])
    assert clicked.exit_code == 2 and "--point, --background and --box are for photos" in (
        clicked.output
    )
    geojson = tmp_path / "water.geojson"
    result = CliRunner().invoke(main, [*command, "--polygons", str(geojson), "--overlap", "600"])
    assert result.exit_code == 1 and "--overlap must be from 0 to half of --tile" in result.output
    result = CliRunner().invoke(main, [*command, "--polygons", str(geojson)])
    assert result.exit_code == 0, result.output
    assert "km2 of water" in result.output and f"polygons in {geojson}" in result.output
    assert read_mask(tmp_path / "water.tif")[0].shape == (300, 300)
    assert json.loads(geojson.read_text())["type"] == "FeatureCollection"
    photo = CliRunner().invoke(
        main,
        [*command[:-4], "--image", str(PROJECT / "README.md"), "--out", "x.png", "--tile", "512"],
    )
    assert photo.exit_code == 2 and "--tile is for georeferenced rasters" in photo.output


class SmoothSegmenter:
    """SAM's place for measuring predict's own memory: water where a pixel is bluer than red,
    smoothed (a few polygons a copy of the scene, as a flood map has)."""

    batch_size, precision, device = 2, "fp32", torch.device("cpu")

    def __init__(self, *args, **kwargs):
        record = RunRecord("vit_tiny", "0" * 64, {"none": {"oracle": False, "multimask": False}})
        self.model = SimpleNamespace(
            record=record, run_record=record, sha256="0" * 64, trained_prompts=["none"]
        )

    def logits(self, images):
        blurred = [
            cv2.blur(pixels[..., 2].astype(np.float32) - pixels[..., 0], (25, 25))
            for pixels, _ in images
        ]
        return [cv2.resize(one, size[::-1]) for one, (_, size) in zip(blurred, images, strict=True)]


def test_a_mosaic_of_the_scene_is_segmented_in_bounded_memory(tmp_path, monkeypatch):
    """4 x 3 copies of the scene side by side, then 16 x 3 (11488 x 2373 px): what predict
    holds at its peak (Python objects and numpy arrays, traced) does not grow with the scene,
    by even half the larger one's uint8 mask: it holds a strip of a scene, not the scene.
    (GDAL's block cache is bounded apart, by GDAL_CACHEMAX.)"""
    monkeypatch.setattr(scene_module, "Segmenter", SmoothSegmenter)
    monkeypatch.setattr(scene_module, "READERS", 1)  # as many tiles in flight in every run
    peaks = {}
    for name, rows in (("small", 4), ("tall", 16)):
        mosaic = write_mosaic(tmp_path / f"{name}.tif", rows=rows, cols=3)
        config = SceneConfig(
            ModelConfig(tmp_path, tmp_path),
            mosaic,
            tmp_path / f"{name}_water.tif",
            polygons=tmp_path / f"{name}.geojson",
            progress=False,
        )
        tracemalloc.start()
        try:
            result = run_predict_scene(config)
            peaks[name] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert result.summary.polygons > 0
    tall_mask = 16 * 718 * 3 * 791
    assert peaks["tall"] - peaks["small"] < tall_mask / 2, peaks
    mask, _, _ = read_mask(tmp_path / "tall_water.tif")
    _, valid = read_scene()
    assert np.array_equal(mask == 255, ~np.tile(valid, (16, 3)))
    assert np.count_nonzero(mask == 1) > 0


@pytest.mark.slow
def test_torchrun_two_processes_share_the_tile_rows_of_a_scene(geo_prediction, tmp_path):
    """Tile rows split between two CPU processes: the same mask and polygons as one process."""
    config, _ = geo_prediction
    values, _ = read_scene()
    crop = write_raster(tmp_path / "crop.tif", values[:, :600, 150:450].copy())
    one = replace(
        config,
        image=crop,
        out=tmp_path / "one.tif",
        polygons=tmp_path / "one.geojson",
        probabilities=None,
        tile=256,
        overlap=32,
    )
    result = run_predict_scene(one)
    assert result.tiles == 6 and result.summary.water_pixels > 0
    command = [
        sys.executable,
        str(PROJECT / "cli.py"),
        "predict",
        "--checkpoint",
        str(config.model.checkpoint),
        "--decoder",
        str(config.model.decoder),
        "--image",
        str(crop),
        "--out",
        str(tmp_path / "two.tif"),
        "--polygons",
        str(tmp_path / "two.geojson"),
        "--tile",
        "256",
        "--overlap",
        "32",
        "--device",
        "cpu",
        "--precision",  # as this process resolves auto (conftest: no native bf16)
        "fp32",
    ]
    done = subprocess.run(torchrun(command, 29621), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("km2 of water") == 1  # rank 0 speaks for the run
    assert np.array_equal(read_mask(tmp_path / "one.tif")[0], read_mask(tmp_path / "two.tif")[0])
    two = json.loads((tmp_path / "two.geojson").read_text())
    assert two == json.loads((tmp_path / "one.geojson").read_text())
    assert not list(tmp_path.glob(".*"))  # no parts left behind


def test_a_stopped_scene_says_nothing_of_it_is_kept(
    tiny_checkpoint, finetuned_run, tmp_path, monkeypatch
):
    """SIGTERM during one GeoTIFF said "finished work is kept", though the rerun starts at
    its first tile."""

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(scene_module, "predict_scene", stopped)
    values, _ = read_scene()
    crop = write_raster(tmp_path / "crop.tif", values[:, 100:200, 200:300].copy())
    command = ["predict", "--checkpoint", str(tiny_checkpoint), "--decoder", str(finetuned_run)]
    command += ["--image", str(crop), "--out", str(tmp_path / "water.tif")]
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 130
    assert f"nothing of {crop} is kept" in result.output
    assert "finished work is kept" not in result.output


def test_a_scene_says_its_time_after_the_first_tile_row_on_a_fake_clock(
    geo_prediction, tmp_path, monkeypatch, caplog
):
    """2 rows of 3 tiles; the first row took 30 s (fake clock): about 30 s for the 3 tiles
    left, said once, with what a GPU would take on a CPU."""
    config, _ = geo_prediction
    values, _ = read_scene()
    path = write_raster(tmp_path / "six.tif", np.ascontiguousarray(values[:, :512, :768]))
    ticks = iter([100.0, 130.0])
    monkeypatch.setattr(estimate, "time", SimpleNamespace(perf_counter=lambda: next(ticks)))
    six = replace(
        config,
        image=path,
        out=tmp_path / "six_water.tif",
        polygons=None,
        probabilities=None,
        tile=256,
        overlap=0,
    )
    with caplog.at_level("INFO", logger="floodcache.predict.scene"):
        assert run_predict_scene(six).tiles == 6
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("predict: ")]
    line = estimate.estimate_line("tile", 3, 30.0, 3, cpu=True)
    assert said == [f"predict: six.tif: {line}"]
    assert "about 30 s for the 3 tiles left" in line
