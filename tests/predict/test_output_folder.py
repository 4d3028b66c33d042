"""An output folder of `predict`: the predictions of one decoder and one set of identity
settings, refused to any other, and readable when recorded by an earlier version."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from floodcache.data.raster import RasterReading
from floodcache.predict.config import (
    FolderConfig,
    ModelConfig,
    PhotoConfig,
    PredictConfig,
    SceneConfig,
)
from floodcache.predict.output_folder import RECORD, claim, record_of
from floodcache.utils.identity import identity_fields

MODEL = ModelConfig(Path("sam.pth"), Path("runs/none"))
CHANGED = {  # another value for each identity field of the predict configs
    "tile": 512,
    "overlap": 64,
    "min_area": 10.0,
    "probability_dtype": "float16",
    "raster": RasterReading(scale="percentile"),
    "bands": (3, 2, 1),
    "scale": "percentile",
}
# A config of each kind as `claim` sees it (the routing config through the scene it asks for)
CONFIGS = {
    FolderConfig: (FolderConfig(MODEL, Path("photos"), Path("water")), lambda c: c),
    SceneConfig: (SceneConfig(MODEL, Path("scenes"), Path("water")), lambda c: c),
    PredictConfig: (PredictConfig(MODEL, Path("scenes"), Path("water")), PredictConfig.scene),
    PhotoConfig: (PhotoConfig(MODEL, Path("photo.jpg"), Path("water.png")), lambda c: c),
    ModelConfig: (MODEL, lambda c: c),
}


def claimed(out: Path, config: object, sha: str = "abc") -> None:
    claim(out, record_of(config, Path("runs/none"), sha), [out / "0.png"], overwrite=False)


@pytest.mark.parametrize("config_class", CONFIGS, ids=lambda c: c.__name__)
def test_each_identity_field_changed_is_refused_with_the_fix(config_class, tmp_path):
    config, folder_config = CONFIGS[config_class]
    assert set(identity_fields(config_class)) <= set(CHANGED), "give a changed value"
    claimed(tmp_path, folder_config(config))
    for name in identity_fields(config_class):
        other = dataclasses.replace(config, **{name: CHANGED[name]})
        with pytest.raises(FileExistsError, match="other settings.*\n.*settings: there") as err:
            claimed(tmp_path, folder_config(other))
        assert "pass --overwrite" in str(err.value)


def test_fields_that_are_not_identity_keep_the_folder_and_another_decoder_is_refused(tmp_path):
    config = SceneConfig(MODEL, Path("scenes"), Path("water"))
    claimed(tmp_path, config)
    moved = ModelConfig(Path("elsewhere.pth"), Path("moved/run"), "cpu", "fp32")
    claimed(tmp_path, dataclasses.replace(config, model=moved, polygons=Path("p"), progress=False))
    with pytest.raises(FileExistsError, match="masks of another decoder"):
        claimed(tmp_path, config, sha="def")


@pytest.mark.parametrize(
    ("earlier", "config"),
    [
        ({}, FolderConfig(MODEL, Path("photos"), Path("water"))),
        (
            {"settings": {"tile": 1024, "overlap": 128, "min_area": 0.0,
                          "probability_dtype": "uint8",
                          "raster": {"bands": None, "scale": "auto",
                                     "percentiles": [2.0, 98.0]}}},
            SceneConfig(MODEL, Path("scenes"), Path("water")),
        ),
    ],
)  # fmt: skip
def test_a_folder_recorded_before_identity_was_declared_is_still_resumed(earlier, config, tmp_path):
    record = {"decoder": "runs/none", "decoder_sha256": "abc"} | earlier
    (tmp_path / RECORD).write_text(json.dumps(record))
    (tmp_path / "0.png").write_bytes(b"a mask")
    claimed(tmp_path, config)  # the same decoder and settings: resumed
    assert (tmp_path / "0.png").read_bytes() == b"a mask"
