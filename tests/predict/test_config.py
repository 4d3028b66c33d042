"""What `predict` is asked: each kind of input takes its own options and refuses the others'."""

from __future__ import annotations

from pathlib import Path

import pytest

from floodcache.data.raster import RasterReading
from floodcache.predict.config import (
    SCENE_ONLY,
    FolderConfig,
    ModelConfig,
    PhotoConfig,
    PredictConfig,
    SceneConfig,
)
from floodcache.settings import OptionConflict
from floodcache.utils.identity import undeclared_fields

MODEL = ModelConfig(Path("sam.pth"), Path("runs/none"))
GIVEN = {  # a value for each option of scenes alone, none of them its default
    "tile": 512,
    "overlap": 64,
    "bands": (3, 2, 1),
    "scale": "percentile",
    "polygons": Path("water.geojson"),
    "min_area": 10.0,
    "probabilities": Path("p.tif"),
    "probability_dtype": "float16",
}


def test_every_field_of_the_predict_configs_says_whether_it_is_identity():
    for config_class in (ModelConfig, PhotoConfig, FolderConfig, SceneConfig, PredictConfig):
        assert undeclared_fields(config_class) == [], config_class.__name__


@pytest.mark.parametrize("name", SCENE_ONLY)
def test_an_option_of_scenes_given_for_a_photo_is_refused_not_dropped(name):
    asked = PredictConfig(MODEL, Path("photo.jpg"), Path("water.png"), **{name: GIVEN[name]})
    flag = "--" + name.replace("_", "-")
    with pytest.raises(OptionConflict, match=f"{flag} is for georeferenced rasters; photo.jpg"):
        asked.photo()
    with pytest.raises(OptionConflict, match=f"{flag} is for georeferenced rasters"):
        asked.folder()


def test_a_photo_keeps_its_prompts_and_a_folder_refuses_them():
    asked = PredictConfig(MODEL, Path("photo.jpg"), Path("w.png"), points=((1.0, 2.0),))
    assert asked.photo() == PhotoConfig(MODEL, Path("photo.jpg"), Path("w.png"), ((1.0, 2.0),))
    with pytest.raises(OptionConflict, match="--point, --background and --box are for one"):
        asked.folder()
    with pytest.raises(OptionConflict, match="--point, --background and --box are for photos"):
        asked.scene()


def test_a_scene_takes_the_options_given_and_the_defaults_of_the_others():
    scene = PredictConfig(MODEL, Path("s.tif"), Path("w.tif"), **GIVEN).scene()
    assert (scene.tile, scene.overlap, scene.min_area) == (512, 64, 10.0)
    assert scene.raster == RasterReading(bands=(3, 2, 1), scale="percentile")
    assert (scene.polygons, scene.probabilities) == (Path("water.geojson"), Path("p.tif"))
    assert scene.probability_dtype == "float16"
    default = PredictConfig(MODEL, Path("s.tif"), Path("w.tif"), overwrite=True).scene()
    assert default == SceneConfig(MODEL, Path("s.tif"), Path("w.tif"), overwrite=True)


def test_a_precision_the_encoder_does_not_take_is_refused_by_the_model_config():
    with pytest.raises(ValueError, match="fp64"):
        ModelConfig(Path("sam.pth"), Path("runs/none"), precision="fp64")
