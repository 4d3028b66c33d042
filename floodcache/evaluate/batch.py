"""One batch of views evaluated with every prompt strategy and every model, on the decoders'
device: the masks are made at the original size there (`sam.masks`), their pixels counted
there against the truth, and only the counts and small previews of the masks come back.

Prompts are made on the host from each view's full-resolution mask with the strategy's seeded
stream, as they always were: the same prompts, whatever the device. Metrics come from the
pixel counts (`metrics.metrics_from_counts`), so a GPU's table equals a CPU's wherever the
masks do.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from floodcache.cache.reader import Cache
from floodcache.evaluate.metrics import metrics_from_counts
from floodcache.evaluate.table import SCHEMA
from floodcache.prompts import PromptOptions, PromptStrategy, make_prompt
from floodcache.sam.masks import full_masks
from floodcache.train.runs import DecoderModel

if TYPE_CHECKING:  # evaluate.py, which runs the batches, defines it
    from floodcache.evaluate.evaluate import Decoders

EVAL_EPOCH = 0  # the prompt stream's epoch at evaluation: the same prompts for every model
COLUMNS = ("image_id", "view", "split", "image_file", "original_size", "input_size")


@dataclass
class Outcome:
    """What the batches evaluated so far gave: table rows, masks and decoding seconds."""

    records: list[dict] = field(default_factory=list)  # SCHEMA, one per model, prompt, view
    masks: list[dict] = field(default_factory=list)  # table.MASKS_SCHEMA, where not skipped
    seconds: dict[str, float] = field(default_factory=dict)  # per model


def read_columns(cache: Cache, rows: np.ndarray) -> dict[str, list]:
    """The per-view columns of `rows` (ascending) the table needs, read once for all batches."""
    return {"row": rows.tolist()} | {name: cache.column(name)[rows].tolist() for name in COLUMNS}


def batch_views(cache: Cache, columns: dict[str, list], part: slice) -> dict:
    """The columns of a batch of views, with each one's full-resolution HxW {0,1} mask and the
    (h, w) of its preview (what its gallery shows)."""
    views = {name: values[part] for name, values in columns.items()}
    views["mask"] = [cache.full_mask(row) for row in views["row"]]
    views["preview_size"] = [cache.image_preview(row).shape[:2] for row in views["row"]]
    return views


@dataclass(frozen=True)
class Trial:
    """What each batch of an evaluation is asked: every model with every prompt strategy,
    the prompts drawn from `seed` with `options` (the same for every model)."""

    models: list[DecoderModel]
    strategies: list[PromptStrategy]
    seed: int
    options: PromptOptions


@torch.inference_mode()
def evaluate_batch(
    decoders: Decoders, trial: Trial, views: dict, embeddings: torch.Tensor, outcome: Outcome
) -> None:
    """Every strategy and model of `trial` on `views` (`batch_views`) with their embeddings
    (on the decoders' device); the rows, masks and seconds go to `outcome`."""
    seed, options = trial.seed, trial.options
    truths = [torch.from_numpy(mask).to(decoders.device) for mask in views["mask"]]
    for strategy in trial.strategies:
        prompts = [
            make_prompt(strategy, mask, seed, image_id, view, EVAL_EPOCH, options)
            for mask, image_id, view in zip(
                views["mask"], views["image_id"], views["view"], strict=True
            )
        ]
        for model in trial.models:
            tic = time.perf_counter()
            kept, lowres, scores = decoders.decode(
                model.name, embeddings, views, prompts, strategy.multimask
            )
            sizes = (
                [views["input_size"][i] for i in kept],
                [views["original_size"][i] for i in kept],
            )
            masks = full_masks(lowres, *sizes)
            counts = _pixel_counts(masks, [truths[i] for i in kept])
            previews = _previews(masks, [views["preview_size"][i] for i in kept])
            results = zip(counts.tolist(), scores.tolist(), strict=True)
            predicted = dict(zip(kept, results, strict=True))
            outcome.seconds[model.name] = (
                outcome.seconds.get(model.name, 0.0) + time.perf_counter() - tic
            )
            outcome.records += _records(model, strategy, views, prompts, predicted)
            outcome.masks += [
                {"model": model.name, "prompt": strategy.name, "row": views["row"][i]}
                | {"mask_png": _png(preview)}
                for i, preview in zip(kept, previews, strict=True)
            ]


def _pixel_counts(masks: list[torch.Tensor], truths: list[torch.Tensor]) -> np.ndarray:
    """Kx4 int64: |P & T|, |P|, |T| and the pixels of each (mask P, truth T), counted where
    the masks are and brought back in one copy."""
    if not masks:
        return np.zeros((0, 4), np.int64)
    counts = [
        torch.stack([(mask & truth.bool()).sum(), mask.sum(), truth.sum()])
        for mask, truth in zip(masks, truths, strict=True)
    ]
    pixels = torch.tensor([mask.numel() for mask in masks])
    return torch.cat([torch.stack(counts).cpu(), pixels[:, None]], dim=1).numpy()


def _previews(masks: list[torch.Tensor], sizes: list) -> list[np.ndarray]:
    """Each HxW bool mask shrunk (nearest) to its view's preview size: hxw uint8 {0,1}."""
    return [
        (F.interpolate(mask[None, None].float(), tuple(size), mode="nearest")[0, 0] > 0.5)
        .to(torch.uint8)
        .cpu()
        .numpy()
        for mask, size in zip(masks, sizes, strict=True)
    ]


def _png(mask: np.ndarray) -> bytes:
    ok, png = cv2.imencode(".png", mask)
    assert ok, "OpenCV failed to encode an in-memory mask"
    return png.tobytes()


def _records(model: DecoderModel, strategy: PromptStrategy, views, prompts, predicted) -> list:
    """One table row (dict) per view of the batch; `predicted`: view index -> (pixel counts,
    SAM's predicted IoU) for the views that had a prompt."""
    records = []
    for i, prompt in enumerate(prompts):
        height, width = views["original_size"][i]
        record = {
            "model": model.name,
            "prompt": strategy.name,
            "oracle": strategy.oracle,
            "multimask": strategy.multimask,
            "skipped": i not in predicted,
            "image_id": views["image_id"][i],
            "view": views["view"][i],
            "split": views["split"][i],
            "row": int(views["row"][i]),
            "image_file": views["image_file"][i],
            "height": height,
            "width": width,
        }
        if i in predicted:
            counts, score = predicted[i]
            metrics = metrics_from_counts(*counts) | {"predicted_iou": score}
        else:
            metrics = {"water_fraction": float(views["mask"][i].mean())}
        prompt_json = {} if prompt is None else prompt.to_dict()
        prompt_json = {k: None if v is None else json.dumps(v) for k, v in prompt_json.items()}
        records.append({name: (record | metrics | prompt_json).get(name) for name in SCHEMA})
    return records
