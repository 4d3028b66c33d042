"""Generated flood scenes: the same from any number of processes."""

from __future__ import annotations

import cv2

from floodcache.bench import embed as bench_embed
from floodcache.bench.config import BenchConfig
from floodcache.data import synthetic


def test_generated_scenes_are_the_same_made_by_processes_or_here(tmp_path):
    """bench's scenes are made by background processes, each from its own seed: the files
    are the scenes made in this process, water over part of each."""
    root, augment = bench_embed.dataset(BenchConfig(views=12), tmp_path / "pool")
    assert augment == 3
    here = tmp_path / "here"
    (here / "Image").mkdir(parents=True)
    (here / "Mask").mkdir()
    for index in range(3):
        synthetic.write_scene(here, index)
        for kind, suffix in (("Image", "jpg"), ("Mask", "png")):
            made = (root / kind / f"{index}.{suffix}").read_bytes()
            assert made == (here / kind / f"{index}.{suffix}").read_bytes()
        water = cv2.imread(str(here / "Mask" / f"{index}.png"), cv2.IMREAD_GRAYSCALE) > 0
        assert 0.2 < water.mean() < 0.8  # below a wavy line at 35-65% of the height
    assert len(list((root / "Image").iterdir())) == 3
