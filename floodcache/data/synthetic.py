"""Generated flood scenes, for tests and `bench`: a photo-like picture with water below a wavy
shore line, and its mask. The same (seed, index) gives the same scene in any process."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

SCENE_SIZES = [(480, 640), (720, 1280), (600, 800), (1080, 1920), (768, 1024), (512, 512)]


def synthetic_scene(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, ...]:
    """A flood-like photo (HxWx3 uint8 RGB), water below a wavy line, and its HxW {0,1} mask.

    Made in uint8 and by broadcasting, with no pixel grid: scenes for thousands of views are
    made in seconds."""
    cols = np.arange(width)
    level = height * rng.uniform(0.35, 0.65) + height * 0.08 * np.sin(cols / width * 6.28)
    water = np.arange(height)[:, None] > level
    colours = rng.integers(90, 150, 3).astype(np.uint8), rng.integers(60, 200, 3).astype(np.uint8)
    image = np.where(water[..., None], *colours)
    image += rng.integers(0, 25, (height, width, 1), dtype=np.uint8)  # at most 199 + 24
    return image, water.astype(np.uint8)


def write_scene(root: Path, index: int, size: tuple[int, int] | None = None, seed: int = 0):
    """Scene `index` of `seed` as root/Image/<index>.jpg and root/Mask/<index>.png (255 =
    water), at `size` (H, W) or the index's of SCENE_SIZES. Returns the image's path."""
    rng = np.random.default_rng([seed, index])
    image, mask = synthetic_scene(rng, *(size or SCENE_SIZES[index % len(SCENE_SIZES)]))
    path = root / "Image" / f"{index}.jpg"
    cv2.imwrite(str(path), image[..., ::-1])
    cv2.imwrite(str(root / "Mask" / f"{index}.png"), mask * 255)
    return path


def write_scenes(
    root: Path,
    count: int,
    sizes: Sequence[tuple[int, int]] | None = None,
    seed: int = 0,
    metadata: bool = False,
) -> Path:
    """A Kaggle-layout data folder of `count` generated scenes (sizes: one (H, W) each, or
    SCENE_SIZES in turn); with `metadata`, a metadata.csv listing them. Returns `root`."""
    (root / "Image").mkdir(parents=True, exist_ok=True)
    (root / "Mask").mkdir(exist_ok=True)
    for index in range(count):
        write_scene(root, index, None if sizes is None else sizes[index], seed)
    if metadata:
        rows = ["Image,Mask"] + [f"{index}.jpg,{index}.png" for index in range(count)]
        (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    return root
