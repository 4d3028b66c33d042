"""`predict` on a folder of georeferenced scenes: each as one scene is segmented, a table of
water areas, a stopped run resumed, other settings refused, scenes shared by torchrun."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from floodcache.predict import scene_folder
from floodcache.predict.config import ModelConfig, SceneConfig
from floodcache.predict.scene_folder import run_predict_scenes
from tests.helpers import PROJECT, read_predictions, torchrun
from tests.rasters import GEO_SCENE, read_scene, write_raster

pytestmark = pytest.mark.skipif(not GEO_SCENE.exists(), reason="needs ../shared/geo")


@pytest.fixture
def scenes(tiny_data, tmp_path):
    """Two scenes cut from the real one (one tile each), a photo and a text file."""
    values, _ = read_scene()
    folder = tmp_path / "scenes"
    folder.mkdir()
    write_raster(folder / "2.tif", values[:, 100:356, 200:456].copy())
    write_raster(folder / "10.tif", values[:, 400:656, 300:556].copy())
    shutil.copy(tiny_data / "Image" / "0.jpg", folder / "photo.jpg")
    (folder / "notes.txt").write_text("not a raster")
    return folder


def folder_config(scenes, checkpoint, decoder, out) -> SceneConfig:
    return SceneConfig(
        ModelConfig(checkpoint, decoder),
        scenes,
        out / "water",
        polygons=out / "polygons",
        progress=False,
    )


def mask_of(path) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as mask:
        return mask.read(1)


def test_a_folder_of_scenes_gives_a_mask_polygons_and_a_row_each(
    scenes, tiny_checkpoint, finetuned_run, tmp_path
):
    from floodcache.predict.scene import run_predict_scene

    config = folder_config(scenes, tiny_checkpoint, finetuned_run, tmp_path)
    result = run_predict_scenes(config)
    assert (result.predicted, result.kept) == (2, [])
    assert sorted(result.unreadable) == ["notes.txt", "photo.jpg"]
    rows = read_predictions(config.out)
    assert list(rows) == ["2.tif", "10.tif", "notes.txt", "photo.jpg"]  # natural order
    assert "not a raster with a CRS" in rows["photo.jpg"]["problem"]
    one = replace(config, image=scenes / "10.tif", out=tmp_path / "one.tif", polygons=None)
    alone = run_predict_scene(one)
    assert np.array_equal(mask_of(config.out / "10.tif"), mask_of(one.out))
    row = rows["10.tif"]
    assert float(row["water_km2"]) == pytest.approx(alone.summary.water_m2 / 1e6, abs=1e-6)
    assert float(row["water_fraction"]) == pytest.approx(alone.summary.water_fraction, abs=1e-6)
    assert (config.polygons / "10.geojson").is_file() and row["polygons"] != ""


def test_a_stopped_folder_run_resumes_and_other_settings_are_refused(
    scenes, tiny_checkpoint, finetuned_run, tmp_path, monkeypatch
):
    config = folder_config(scenes, tiny_checkpoint, finetuned_run, tmp_path)
    segment = scene_folder.predict_scene

    def stopped_at_the_second(segmenter, config, scene, outputs, group):
        if scene.path.name == "10.tif":
            raise KeyboardInterrupt
        return segment(segmenter, config, scene, outputs, group)

    monkeypatch.setattr(scene_folder, "predict_scene", stopped_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        run_predict_scenes(config)
    assert sorted(p.name for p in config.out.iterdir()) == [
        "2.tif",
        "predict.json",
        "predictions.csv",
    ]
    assert "2.tif" in read_predictions(config.out)  # the table holds what was done
    first = (config.out / "2.tif").stat().st_mtime_ns
    monkeypatch.undo()
    result = run_predict_scenes(config)
    assert (result.predicted, result.kept) == (1, ["2.tif"])
    assert (config.out / "2.tif").stat().st_mtime_ns == first
    assert list(read_predictions(config.out))[:2] == ["2.tif", "10.tif"]
    with pytest.raises(FileExistsError, match=r"other settings:\n .*settings: there"):
        run_predict_scenes(replace(config, tile=512))
    assert run_predict_scenes(replace(config, tile=512, overwrite=True)).predicted == 2


@pytest.mark.slow
def test_torchrun_two_processes_share_the_scenes_of_a_folder(
    scenes, tiny_checkpoint, finetuned_run, tmp_path
):
    config = folder_config(scenes, tiny_checkpoint, finetuned_run, tmp_path / "one")
    run_predict_scenes(config)
    two = tmp_path / "two"
    command = [
        sys.executable,
        str(PROJECT / "cli.py"),
        "predict",
        "--checkpoint",
        str(tiny_checkpoint),
        "--decoder",
        str(finetuned_run),
        "--image",
        str(scenes),
        "--out",
        str(two / "water"),
        "--polygons",
        str(two / "polygons"),
        "--device",
        "cpu",
        "--precision",  # as this process resolves auto (conftest: no native bf16)
        "fp32",
    ]
    done = subprocess.run(torchrun(command, 29631), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("2 scenes segmented") == 1  # rank 0 speaks for the run
    for name in ("2.tif", "10.tif"):
        assert np.array_equal(mask_of(config.out / name), mask_of(two / "water" / name))
    assert read_predictions(two / "water") == read_predictions(config.out)


def test_a_scene_of_other_bands_is_listed_and_the_others_segmented(
    scenes, tiny_checkpoint, finetuned_run, tmp_path
):
    """One 2-band scene stopped the whole folder before anything was segmented."""
    values, _ = read_scene()
    write_raster(scenes / "5.tif", values[:2, 100:356, 200:456].copy())
    config = folder_config(scenes, tiny_checkpoint, finetuned_run, tmp_path)
    result = run_predict_scenes(config)
    assert result.predicted == 2 and "5.tif" in result.unreadable
    rows = read_predictions(config.out)
    assert "5.tif" in rows["5.tif"]["problem"] and (config.out / "10.tif").is_file()
