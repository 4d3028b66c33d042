"""`predict` routed in the library: what the image is decides the runner and its options."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from floodcache.predict.config import ModelConfig, PredictConfig
from floodcache.predict.run import kind_of, run_predict
from floodcache.settings import OptionConflict
from tests.rasters import GEO_SCENE

MISSING = ModelConfig(Path("no-such-sam.pth"), Path("no-such-run"))  # never loaded here


def test_a_photo_a_folder_a_scene_and_a_folder_of_scenes_are_told_apart(tiny_data, tmp_path):
    photo = tiny_data / "Image" / "0.jpg"
    assert kind_of(photo) == "photo"
    assert kind_of(tiny_data / "Image") == "folder"
    if GEO_SCENE.exists():
        assert kind_of(GEO_SCENE) == "scene"
        shutil.copy(photo, tmp_path / "photo.jpg")
        shutil.copy(GEO_SCENE, tmp_path / GEO_SCENE.name)
        assert kind_of(tmp_path) == "scenes"


def test_an_option_of_scenes_for_a_photo_is_refused_before_any_work(tiny_data, tmp_path):
    photo = tiny_data / "Image" / "0.jpg"
    asked = PredictConfig(MISSING, photo, tmp_path / "w.png", min_area=5.0)
    with pytest.raises(OptionConflict, match="--min-area is for georeferenced rasters"):
        run_predict(asked)
    folder = PredictConfig(MISSING, tiny_data / "Image", tmp_path / "w", box=(0, 0, 9, 9))
    with pytest.raises(OptionConflict, match="--point, --background and --box are for one"):
        run_predict(folder)
    assert list(tmp_path.iterdir()) == []  # nothing written
