"""scripts/geotiff_memory.py: peak memory of `predict` on a mosaic of a GeoTIFF."""

from __future__ import annotations

import re

import pytest

from tests.helpers import run_script, tiny_geotiff


@pytest.mark.slow
def test_it_measures_predict_on_a_mosaic_of_the_given_scene(tmp_path):
    scene = tiny_geotiff(tmp_path / "scene.tif")
    work = tmp_path / "work"
    work.mkdir()
    done = run_script(
        "geotiff_memory.py",
        *("--side", 400, "--model-type", "vit_tiny", "--device", "cpu"),
        *("--scene", scene, "--workdir", work),
    )
    assert done.returncode == 0, done.stderr
    assert "mosaic 400 x 400" in done.stdout
    assert re.search(r"predict: exit 0, \d+ s, peak RSS \d+ MiB", done.stdout), done.stdout
    assert list(work.iterdir()) == []  # its temporary folder is removed
