"""scripts/geotiff_picture.py: the README's picture of `predict` on a GeoTIFF."""

from __future__ import annotations

import pytest
from PIL import Image

from tests.helpers import run_script, tiny_geotiff


@pytest.mark.slow
def test_it_draws_the_scene_and_its_mask(tmp_path):
    scene = tiny_geotiff(tmp_path / "scene.tif")
    picture = tmp_path / "pictures" / "predict.png"
    done = run_script(
        "geotiff_picture.py", "--out", picture, "--model-type", "vit_tiny", "--scene", scene
    )
    assert done.returncode == 0, done.stderr
    assert f"{picture}:" in done.stdout
    with Image.open(picture) as drawn:
        assert drawn.mode == "P"  # quantised to a palette, as the README's picture is
        assert drawn.width > drawn.height  # the scene and the mask side by side
