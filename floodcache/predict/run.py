"""`predict` routed: what `image` is decides which runner segments it, with which config."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from floodcache.data.raster import georeferenced
from floodcache.predict.config import PredictConfig
from floodcache.predict.folder import FolderResult, run_predict_folder
from floodcache.predict.scene import SceneResult, run_predict_scene
from floodcache.predict.scene_folder import ScenesResult, run_predict_scenes
from floodcache.predict.segmenter import Prediction, run_predict_photo

# What `image` is -> (the config of that kind, refusing the options of the others; its runner)
KINDS: dict[str, tuple[Callable, Callable]] = {
    "photo": (PredictConfig.photo, run_predict_photo),
    "folder": (PredictConfig.folder, run_predict_folder),
    "scene": (PredictConfig.scene, run_predict_scene),
    "scenes": (PredictConfig.scene, run_predict_scenes),
}


def kind_of(image: Path) -> str:
    """A key of KINDS: a georeferenced raster (a file with a CRS) is a scene, a folder
    holding one a folder of scenes; any other folder is a folder of photos."""
    if image.is_dir():
        files = (path for path in sorted(image.iterdir()) if path.is_file())
        return "scenes" if any(georeferenced(path) for path in files) else "folder"
    return "scene" if georeferenced(image) else "photo"


def run_predict(config: PredictConfig) -> Prediction | FolderResult | SceneResult | ScenesResult:
    """Segment `config.image`, whatever it is: one photo with its prompts, a folder of
    photos, a scene or a folder of scenes (prompt-free). An option the kind does not take is
    refused (`OptionConflict`) before any work."""
    make_config, runner = KINDS[kind_of(Path(config.image))]
    return runner(make_config(config))
