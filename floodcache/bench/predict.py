"""`bench`'s predict row: `predict` on a folder of bench's images, as a user runs it.

The run's decoder is SAM's own (a run folder made for the bench), so the row times reading,
encoding, decoding and writing each mask, not what the decoder learnt.
"""

from __future__ import annotations

from pathlib import Path

import torch

from floodcache.bench.table import PeakMemory, Row
from floodcache.predict.config import FolderConfig
from floodcache.predict.folder import run_predict_folder
from floodcache.sam.checkpoints import RANDOM_WEIGHTS
from floodcache.sam.modeling import Sam
from floodcache.train.weights import save_run
from floodcache.utils.hashing import sha256_file


def predict_stage(
    sam: Sam, model_type: str, checkpoint: Path | None, data_dir: Path, count: int, tmp: Path,
    device: torch.device,
) -> Row:  # fmt: skip
    """`run_predict_folder` on the first `count` images of `data_dir`/Image (views/s: images
    a second after SAM is ready; the note gives the whole run's, loading included)."""
    config = predict_folder(sam, model_type, checkpoint, data_dir, count, tmp)
    config.device = str(device)
    with PeakMemory(device) as peak:
        result = run_predict_folder(config)
    return Row(
        "predict (folder)",
        result.precision,
        result.batch_size,
        result.predicted,
        result.seconds - result.load_seconds,
        peak.megabytes(),
        note=f"{result.predicted} images read, encoded, decoded, written as PNG, prompt-free; "
        f"{result.predicted / result.seconds:.3f} images/s over the whole run, SAM loaded in "
        f"{result.load_seconds:.1f} s",
    )


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
    record = {"model_type": model_type, "checkpoint_sha256": sha, "prompts": {"none": 1.0}}
    save_run(run, sam.mask_decoder.state_dict(), record, [{"epoch": 0}])
    images = tmp / "predict-images"
    images.mkdir()
    for image in sorted((Path(data_dir) / "Image").iterdir())[:count]:
        (images / image.name).symlink_to(image.resolve())
    return FolderConfig(checkpoint, run, images, tmp / "predict-masks", progress=False)
