"""Shared fixtures: a tiny generated data set, SAM checkpoints with random weights, caches,
runs and evaluations made from them; and the one marker of tests that need a CUDA GPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from floodcache.data import audit
from floodcache.embed.run import run_embed
from tests.helpers import SIZES, embed_config, save_checkpoint, write_dataset, write_zoo
from tests.rasters import GEO_SCENE


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU (skipped without one)")


def pytest_collection_modifyitems(config, items) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="package", autouse=True)
def cpu_without_native_bf16(tmp_path_factory):
    """(Once for each test package: the patch is undone between them.) Every test in this
    process sees a CPU without native bf16 (`auto` is fp32), so that its
    numbers are the same on every CPU; tests/sam/test_precision.py fakes the flags itself."""
    from floodcache.sam import precision

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(precision, "CPUINFO", tmp_path_factory.mktemp("cpu") / "no-cpuinfo")
        precision.cpu_flags.cache_clear()
        yield
    precision.cpu_flags.cache_clear()


# scope="package": the `tests` package holds every test (its subpackages included), so each
# fixture below is built once per run and shared.


@pytest.fixture(scope="package")
def tiny_data(tmp_path_factory) -> Path:
    """Seven generated image/mask pairs of different sizes and aspect ratios."""
    return write_dataset(tmp_path_factory.mktemp("data"), SIZES)


@pytest.fixture(scope="package")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A random-weight checkpoint of the test-only `vit_tiny` SAM."""
    return save_checkpoint("vit_tiny", tmp_path_factory.mktemp("ckpt") / "sam_tiny.pth")


@pytest.fixture(scope="package")
def vit_b_checkpoint(tmp_path_factory) -> Path:
    """A random-weight checkpoint with the real ViT-B architecture (375 MB on disk)."""
    return save_checkpoint("vit_b", tmp_path_factory.mktemp("ckpt_b") / "sam_vit_b.pth")


@pytest.fixture(scope="package")
def tiny_cache(tiny_data, tiny_checkpoint, tmp_path_factory) -> Path:
    """A complete cache of tiny_data: 5 train images x 2 views, 1 val, 1 test."""
    cache = tmp_path_factory.mktemp("cache") / "tiny.h5"
    run_embed(embed_config(tiny_data, tiny_checkpoint, cache))
    return cache


@pytest.fixture(scope="package")
def train_cache(tiny_data, tiny_checkpoint, tmp_path_factory) -> Path:
    """tiny_data split for training tests: 4 train images x 2 views, 3 val images, no test."""
    cache = tmp_path_factory.mktemp("cache") / "train.h5"
    run_embed(embed_config(tiny_data, tiny_checkpoint, cache, fractions=(0.55, 0.45, 0.0)))
    return cache


@pytest.fixture(scope="package")
def finetuned_run(train_cache, tmp_path_factory) -> Path:
    """A decoder fine-tuned from train_cache for one epoch on the mix point,box,none."""
    from floodcache.train.config import TrainConfig
    from floodcache.train.run import run_train

    out = tmp_path_factory.mktemp("runs") / "mix"
    config = TrainConfig(train_cache, out, train_prompts="point,box,none", epochs=1, progress=False)
    run_train(config)
    return out


@pytest.fixture(scope="package")
def finetuned_evaluation(train_cache, finetuned_run, tmp_path_factory):
    """(config, result) of evaluating pretrained and finetuned_run on train_cache's val split."""
    from floodcache.evaluate.config import EvaluateConfig
    from floodcache.evaluate.evaluate import run_evaluate

    out = tmp_path_factory.mktemp("evaluation")
    config = EvaluateConfig(
        train_cache,
        out,
        (finetuned_run,),
        eval_prompts="point,box,none",
        split="val",
        progress=False,
    )
    return config, run_evaluate(config)


@pytest.fixture(scope="package")
def zoo(tmp_path_factory) -> tuple[Path, Path]:
    return write_zoo(tmp_path_factory.mktemp("zoo"))


@pytest.fixture(scope="package")
def zoo_report(zoo) -> audit.AuditReport:
    return audit.audit_folder(images=zoo[0], masks=zoo[1])


@pytest.fixture(scope="package")
def geo_prediction(tiny_checkpoint, finetuned_run, tmp_path_factory):
    """(config, result) of `predict` on the real scene: 4 tiles of 512 px overlapping by 64 or
    more, with its polygons and float16 probabilities."""
    from floodcache.predict.config import ModelConfig, SceneConfig
    from floodcache.predict.scene import run_predict_scene

    if not GEO_SCENE.exists():
        pytest.skip("needs ../shared/geo")
    out = tmp_path_factory.mktemp("geo")
    config = SceneConfig(
        ModelConfig(tiny_checkpoint, finetuned_run),
        GEO_SCENE,
        out / "water.tif",
        polygons=out / "water.geojson",
        probabilities=out / "probabilities.tif",
        probability_dtype="float16",
        tile=512,
        overlap=64,
        progress=False,
    )
    return config, run_predict_scene(config)
