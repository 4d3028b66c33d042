"""What `predict` is asked: one image (`PredictConfig`) or a folder of them (`FolderConfig`).
Torch-free, so that the command line reads its defaults from here at once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from floodcache.settings import AUTO_PRECISION, check_precision


@dataclass
class PredictConfig:
    """One image to segment with a fine-tuned decoder."""

    checkpoint: Path  # the SAM checkpoint the run's cache was embedded with
    decoder: Path  # run folder written by `train`
    image: Path
    out: Path  # the mask as PNG: 255 = water, 0 = not water, the image's size
    points: tuple[tuple[float, float], ...] = ()  # water clicks, XY original-image pixels
    background: tuple[tuple[float, float], ...] = ()  # not-water clicks, XY pixels
    box: tuple[float, float, float, float] | None = None  # XYXY original-image pixels
    device: str | None = None
    precision: str = AUTO_PRECISION  # the encoder's: fp16 on CUDA, fp32 on a CPU, as embed's
    overwrite: bool = False  # replace an existing `out` file

    def __post_init__(self) -> None:
        check_precision(self.precision, "encoder")


@dataclass
class FolderConfig:
    """Every file of a folder, segmented prompt-free with a fine-tuned decoder."""

    checkpoint: Path  # the SAM checkpoint the run's cache was embedded with
    decoder: Path  # run folder written by `train` (trained on `none`, for prompt-free masks)
    images: Path  # a folder: each visible file in it is read as an image (not subfolders)
    out: Path  # another folder: one mask <stem>.png per image (255 = water), and SUMMARY
    overwrite: bool = False  # segment again images whose mask an earlier run wrote
    device: str | None = None
    precision: str = AUTO_PRECISION  # the encoder's: fp16 on CUDA, fp32 on a CPU, as embed's
    progress: bool = True

    def __post_init__(self) -> None:
        check_precision(self.precision, "encoder")
