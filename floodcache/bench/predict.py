"""`bench`'s predict rows: `predict` on a folder of bench's images, and on a GeoTIFF scene
made of them, as a user runs it.

The run's decoder is SAM's own (a run folder made for the bench), so the rows time reading,
encoding, decoding and writing each mask, not what the decoder learnt.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from floodcache.bench.table import PeakMemory, Row
from floodcache.data.decode import read_image
from floodcache.predict.config import FolderConfig, ModelConfig, SceneConfig
from floodcache.predict.folder import run_predict_folder
from floodcache.predict.scene import run_predict_scene
from floodcache.prompts import parse_prompts
from floodcache.sam.checkpoints import RANDOM_WEIGHTS
from floodcache.sam.modeling import Sam
from floodcache.sam.preprocess import IMAGE_SIZE
from floodcache.train.runs import RunRecord
from floodcache.train.weights import save_run
from floodcache.utils.hashing import sha256_file


def predict_stage(folder: FolderConfig, device: torch.device) -> Row:
    """`run_predict_folder` on `predict_folder`'s images (views/s: images a second after SAM
    is ready; the note gives the whole run's, loading included)."""
    config = replace(folder, model=replace(folder.model, device=str(device)))
    with PeakMemory(device) as peak:
        result = run_predict_folder(config)
    note = (
        f"{result.predicted} images read, encoded, decoded, written as PNG, prompt-free; "
        f"{result.predicted / result.seconds:.3f} images/s over the whole run, SAM loaded in "
        f"{result.load_seconds:.1f} s"
    )
    return _row("predict (folder)", result, result.predicted, peak, note)


def _row(stage: str, result, views: int, peak: PeakMemory, note: str) -> Row:
    """A predict run's row: `views` a second from when SAM was ready."""
    seconds = result.seconds - result.load_seconds
    return Row(
        stage, result.precision, result.batch_size, views, seconds, peak.megabytes(), note=note
    )


def geotiff_stage(folder: FolderConfig, count: int, tmp: Path, device: torch.device) -> Row:
    """`run_predict_scene` on a GeoTIFF of about `count` tiles of SAM's input size, made of
    the folder's images, with the default overlap (views/s: tiles a second after SAM is
    ready; the note gives the whole run's, reading and writing the COG included)."""
    scene = bench_scene(sorted(Path(folder.images).iterdir()), count, tmp / "predict-scene.tif")
    model = replace(folder.model, device=str(device))
    config = SceneConfig(model, scene, tmp / "predict-scene-water.tif", progress=False)
    with PeakMemory(device) as peak:
        result = run_predict_scene(config)
    note = (
        f"a {result.height} x {result.width} GeoTIFF in {result.tiles} tiles of "
        f"{config.tile} px overlapping by {config.overlap}: read, encoded, decoded, blended, "
        f"written as a COG; {result.decoded / result.seconds:.3f} tiles/s over the whole run"
    )
    return _row("predict (GeoTIFF)", result, result.decoded, peak, note)


def bench_scene(images: list[Path], count: int, path: Path) -> Path:
    """A uint8 RGB GeoTIFF (UTM 18N, 10 m pixels) of about `count` tiles of SAM's input
    side, one of `images` (resized) in each, written a tile at a time."""
    import cv2
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    cols = math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    profile = dict(
        driver="GTiff",
        width=cols * IMAGE_SIZE,
        height=rows * IMAGE_SIZE,
        count=3,
        dtype="uint8",
        crs="EPSG:32618",
        transform=Affine(10, 0, 500000, 0, -10, 2800000),
        tiled=True,
        blockxsize=512,
        blockysize=512,
    )
    with rasterio.open(path, "w", **profile) as scene:
        for index in range(rows * cols):
            image, _ = read_image(images[index % len(images)])
            tile = cv2.resize(image, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)
            row, col = divmod(index, cols)
            window = Window(col * IMAGE_SIZE, row * IMAGE_SIZE, IMAGE_SIZE, IMAGE_SIZE)
            scene.write(np.ascontiguousarray(tile.transpose(2, 0, 1)), window=window)
    return path


def predict_folder(
    sam: Sam, model_type: str, checkpoint: Path | None, data_dir: Path, count: int, tmp: Path
) -> FolderConfig:
    """A folder of the first `count` images of `data_dir`/Image (links), and a run whose
    decoder is `sam`'s, in `tmp`: predict's config, writing masks to tmp/predict-masks."""
    if checkpoint is None:  # random weights: the bench's SAM, saved for predict to load
        checkpoint, sha = tmp / "predict-sam.pth", RANDOM_WEIGHTS
        torch.save(sam.state_dict(), checkpoint)
    else:
        sha = sha256_file(checkpoint)
    run = tmp / "predict-run"
    record = RunRecord(model_type, sha, RunRecord.prompts_of(parse_prompts("none")))
    save_run(run, sam.mask_decoder.state_dict(), record, [{"epoch": 0}])
    images = tmp / "predict-images"
    images.mkdir()
    for image in sorted((Path(data_dir) / "Image").iterdir())[:count]:
        (images / image.name).symlink_to(image.resolve())
    return FolderConfig(ModelConfig(checkpoint, run), images, tmp / "predict-masks", progress=False)
