"""A prompt's answer against `evaluate`'s own path (every decoder run alone, masks at the
original size), on views larger than their preview: the same masks and IoUs, and a view too
large to count at full size counted at its preview size, as the answer says."""

from __future__ import annotations

import base64

import cv2
import numpy as np
import pytest
import torch

from floodcache.cache.reader import Cache
from floodcache.embed.run import run_embed
from floodcache.evaluate.batch import _pixel_counts
from floodcache.evaluate.evaluate import Decoders
from floodcache.evaluate.metrics import metrics_from_counts
from floodcache.explore import answers as answers_module
from floodcache.explore.answers import PromptAnswers, shrink
from floodcache.prompts import Prompt
from floodcache.sam.masks import decode_views, full_masks
from floodcache.train.runs import DecoderModel, pretrained
from tests.helpers import embed_config, write_dataset

COLORS = {"pretrained": (255, 0, 0), "changed": (0, 255, 0)}
PROMPTS = {
    "point": Prompt(points=np.array([[300.0, 200.0]]), labels=[1], box=None),
    "points": Prompt(points=np.array([[30.0, 40.0], [500.0, 300.0]]), labels=[1, 0], box=None),
    "box": Prompt(points=None, labels=None, box=np.array([50.0, 60.0, 700.0, 500.0])),
    "box and point": Prompt(
        points=np.array([[100.0, 100.0]]), labels=[1], box=np.array([0.0, 0.0, 400.0, 300.0])
    ),
}


@pytest.fixture(scope="module")
def large_cache(tiny_checkpoint, tmp_path_factory):
    """One 600x900 view: its preview (longest side 512) is smaller than the view."""
    root = tmp_path_factory.mktemp("large")
    data = write_dataset(root / "data", [(600, 900)])
    cache = root / "large.h5"
    run_embed(embed_config(data, tiny_checkpoint, cache, fractions=(1.0, 0.0, 0.0)))
    with Cache.open(cache) as opened:
        base = pretrained(opened)
        changed = {name: value * np.float32(1.01) for name, value in base.state.items()}
        yield opened, [base, DecoderModel("changed", changed, "test")]


def mask_of(overlay_url: str) -> np.ndarray:
    png = base64.b64decode(overlay_url.split(",", 1)[1])
    rgba = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    return (rgba[..., 3] > 0).astype(np.uint8)


def evaluated_way(cache: Cache, models, row: int, prompt: Prompt) -> dict:
    """Each model's mask (at the original size) and metrics as `evaluate` makes them."""
    decoders = Decoders(cache, models, "cpu")
    views = {
        "original_size": [tuple(int(s) for s in cache.column("original_size")[row])],
        "input_size": [tuple(int(s) for s in cache.column("input_size")[row])],
    }
    loader = cache.load_embeddings(np.array([row]))
    loader.wait(1)
    embedding = torch.from_numpy(np.array(loader.array[:1])).float()
    loader.close()
    truth = torch.from_numpy(cache.full_mask(row)).bool()
    multimask = prompt.num_points == 1 and prompt.box is None
    results = {}
    for model in models:
        _, lowres, _ = decode_views(
            decoders.prompt_encoder,
            decoders.mask_decoders[model.name],
            embedding,
            views,
            [prompt],
            multimask,
        )
        mask = full_masks(lowres, views["input_size"], views["original_size"])[0]
        counts = _pixel_counts([mask], [truth])[0].tolist()
        results[model.name] = (mask.numpy(), metrics_from_counts(*counts))
    return results


@pytest.mark.parametrize("kind", PROMPTS)
def test_an_answer_equals_evaluates_own_for_every_decoder(large_cache, kind):
    cache, models = large_cache
    row = int(cache.rows()[0])
    answer = PromptAnswers(cache, models, COLORS, "cpu").answer(row, PROMPTS[kind])
    assert answer["iou_at"] == "original"
    preview = cache.image_preview(row).shape[:2]
    for name, (mask, metrics) in evaluated_way(cache, models, row, PROMPTS[kind]).items():
        shown = answer["models"][name]
        assert shown["iou"] == pytest.approx(metrics["iou"], abs=1e-6)
        assert np.array_equal(mask_of(shown["mask"]), shrink(mask, preview))


def test_a_view_too_large_is_counted_at_its_preview_size(large_cache, monkeypatch):
    cache, models = large_cache
    row = int(cache.rows()[0])
    monkeypatch.setattr(answers_module, "FULL_SIZE_PIXELS", 100_000)
    answer = PromptAnswers(cache, models, COLORS, "cpu").answer(row, PROMPTS["box"])
    assert answer["iou_at"] == "preview"
    preview = cache.image_preview(row).shape[:2]
    truth = torch.from_numpy(shrink(cache.full_mask(row), preview)).bool()
    full = evaluated_way(cache, models, row, PROMPTS["box"])
    for name, shown in answer["models"].items():
        mask = torch.from_numpy(mask_of(shown["mask"])).bool()
        assert mask.shape == truth.shape
        counts = _pixel_counts([mask], [truth])[0].tolist()
        assert shown["iou"] == pytest.approx(metrics_from_counts(*counts)["iou"], abs=1e-6)
        # resized logits, not the full-size mask shrunk: close to the full-size IoU, not equal
        assert shown["iou"] == pytest.approx(full[name][1]["iou"], abs=0.05)
