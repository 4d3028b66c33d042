"""Shared fixtures: a tiny generated data set and SAM checkpoints with random weights."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from floodcache.embed import EmbedConfig, run_embed
from floodcache.encoder import build_sam

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "flood_dataset"
PROJECT = Path(__file__).resolve().parents[1]


def save_checkpoint(model_type: str, path: Path, seed: int = 0) -> Path:
    """A SAM checkpoint file with random weights: a state dict, like the official files."""
    torch.manual_seed(seed)
    torch.save(build_sam(model_type).state_dict(), path)
    return path


def make_scene(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A flood-like picture: brownish water below a wavy line, sky/land above. RGB and {0,255}."""
    rows = np.arange(height)[:, None]
    cols = np.arange(width)[None, :]
    level = height * rng.uniform(0.35, 0.65) + height * 0.08 * np.sin(cols / width * 6.28)
    water = rows > level
    image = np.empty((height, width, 3), np.uint8)
    image[...] = rng.integers(60, 200, 3)
    image[water] = rng.integers(90, 150, 3)
    noise = rng.integers(0, 25, (height, width, 1))
    image = np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8)
    return image, (water * 255).astype(np.uint8)


def write_dataset(root: Path, sizes: list[tuple[int, int]], seed: int = 0) -> Path:
    """A Kaggle-layout data set (Image/<id>.jpg, Mask/<id>.png, metadata.csv), generated."""
    rng = np.random.default_rng(seed)
    (root / "Image").mkdir(parents=True)
    (root / "Mask").mkdir()
    lines = ["Image,Mask"]
    for index, (height, width) in enumerate(sizes):
        image, mask = make_scene(rng, height, width)
        Image.fromarray(image).save(root / "Image" / f"{index}.jpg", quality=95)
        Image.fromarray(mask).save(root / "Mask" / f"{index}.png")
        lines.append(f"{index}.jpg,{index}.png")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    return root


SIZES = [(120, 160), (200, 150), (90, 90), (150, 260), (100, 180), (170, 120), (130, 130)]


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """Seven generated image/mask pairs of different sizes and aspect ratios."""
    return write_dataset(tmp_path_factory.mktemp("data"), SIZES)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A random-weight checkpoint of the test-only `vit_tiny` SAM."""
    return save_checkpoint("vit_tiny", tmp_path_factory.mktemp("ckpt") / "sam_tiny.pth")


@pytest.fixture(scope="session")
def vit_b_checkpoint(tmp_path_factory) -> Path:
    """A random-weight checkpoint with the real ViT-B architecture (375 MB on disk)."""
    return save_checkpoint("vit_b", tmp_path_factory.mktemp("ckpt_b") / "sam_vit_b.pth")


def embed_config(data_dir: Path, checkpoint: Path, cache: Path, **overrides) -> EmbedConfig:
    """A quick embed of the test-only vit_tiny SAM, one augmented view per training image."""
    settings = dict(
        cache=cache,
        data_dir=data_dir,
        checkpoint=checkpoint,
        model_type="vit_tiny",
        augment=1,
        batch_size=3,
        workers=0,
        progress=False,
    )
    return EmbedConfig(**(settings | overrides))


@pytest.fixture(scope="session")
def tiny_cache(tiny_data, tiny_checkpoint, tmp_path_factory) -> Path:
    """A complete cache of tiny_data: 5 train images x 2 views, 1 val, 1 test."""
    cache = tmp_path_factory.mktemp("cache") / "tiny.h5"
    run_embed(embed_config(tiny_data, tiny_checkpoint, cache))
    return cache


@pytest.fixture(scope="session")
def train_cache(tiny_data, tiny_checkpoint, tmp_path_factory) -> Path:
    """tiny_data split for training tests: 4 train images x 2 views, 3 val images, no test."""
    cache = tmp_path_factory.mktemp("cache") / "train.h5"
    run_embed(embed_config(tiny_data, tiny_checkpoint, cache, fractions=(0.55, 0.45, 0.0)))
    return cache


@pytest.fixture(scope="session")
def finetuned_run(train_cache, tmp_path_factory) -> Path:
    """A decoder fine-tuned from train_cache for one epoch on the mix point,box,none."""
    from floodcache.train import TrainConfig, run_train

    out = tmp_path_factory.mktemp("runs") / "mix"
    config = TrainConfig(train_cache, out, prompt="point,box,none", epochs=1, progress=False)
    run_train(config)
    return out


@pytest.fixture(scope="session")
def finetuned_evaluation(train_cache, finetuned_run, tmp_path_factory):
    """(config, result) of evaluating pretrained and finetuned_run on train_cache's val split."""
    from floodcache.evaluate import EvaluateConfig, run_evaluate

    out = tmp_path_factory.mktemp("evaluation")
    config = EvaluateConfig(
        train_cache, out, (finetuned_run,), prompts="point,box,none", split="val", progress=False
    )
    return config, run_evaluate(config)


def start_interruptible(command: list[str]) -> subprocess.Popen:
    """Start `command` so that SIGINT reaches it as Ctrl-C in a terminal would: in a process
    group of its own, which `press_ctrl_c` signals whole, the processes it started included.

    A shell's background jobs (CI runners among them) inherit an ignored SIGINT; restore it.
    """
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def press_ctrl_c(process: subprocess.Popen) -> None:
    """SIGINT to the process group of `start_interruptible`'s process, as a terminal sends."""
    os.killpg(process.pid, signal.SIGINT)
