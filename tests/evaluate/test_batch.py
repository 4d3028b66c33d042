"""Views evaluated on the decoders' device: metrics from pixel counts made there equal the
host's numpy metrics of the same masks, and every mask is kept at its preview's size."""

from __future__ import annotations

import cv2
import numpy as np
import polars as pl
import pytest
import torch

from floodcache.cache.reader import Cache
from floodcache.evaluate.batch import (
    EVAL_EPOCH,
    Outcome,
    Trial,
    batch_views,
    evaluate_batch,
    read_columns,
)
from floodcache.evaluate.config import EvaluateConfig
from floodcache.evaluate.evaluate import Decoders, run_evaluate
from floodcache.evaluate.metrics import mask_metrics
from floodcache.prompts import PROMPTS, PromptOptions, make_prompt
from floodcache.sam.masks import predict_views
from floodcache.train.weights import decoder_models


def test_device_counts_give_the_hosts_metrics_and_the_masks_are_kept(train_cache, finetuned_run):
    strategies = [PROMPTS[name] for name in ("point", "box", "none")]
    with Cache.open(train_cache) as cache:
        models = decoder_models(cache, (finetuned_run,))
        decoders = Decoders(cache, models, "cpu")
        rows = cache.rows("val")
        views = batch_views(cache, read_columns(cache, rows), slice(0, len(rows)))
        embeddings = torch.from_numpy(cache.embeddings(rows)).float()
        outcome = Outcome()
        trial = Trial(models, strategies, 0, PromptOptions())
        evaluate_batch(decoders, trial, views, embeddings, outcome)
    records = iter(outcome.records)
    kept = {(m["model"], m["prompt"], m["row"]): m["mask_png"] for m in outcome.masks}
    for strategy in strategies:
        prompts = [
            make_prompt(strategy, mask, 0, image_id, view, EVAL_EPOCH)
            for mask, image_id, view in zip(
                views["mask"], views["image_id"], views["view"], strict=True
            )
        ]
        for model in models:
            decoder = decoders.mask_decoders[model.name]
            made = predict_views(
                decoders.prompt_encoder, decoder, embeddings, views, prompts, strategy.multimask
            )
            for i, predicted in enumerate(made):
                record = next(records)
                assert (record["model"], record["prompt"], record["row"]) == (
                    model.name,
                    strategy.name,
                    views["row"][i],
                )
                if predicted is None:
                    assert record["skipped"] and record["iou"] is None
                    continue
                mask, score = predicted
                expected = mask_metrics(mask, views["mask"][i])
                assert {k: record[k] for k in expected} == expected  # exactly
                assert record["predicted_iou"] == score
                png = kept[(model.name, strategy.name, views["row"][i])]
                small = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
                size = tuple(views["preview_size"][i])
                shrunk = torch.nn.functional.interpolate(
                    torch.from_numpy(mask)[None, None].float(), size, mode="nearest"
                )[0, 0].numpy()
                assert small.shape == size and np.array_equal(small, shrunk > 0.5)
    assert next(records, None) is None


def test_an_evaluation_keeps_one_mask_per_view_it_did_not_skip(finetuned_evaluation):
    from floodcache.evaluate.table import load_masks

    config, result = finetuned_evaluation
    masks = load_masks(config.out)
    evaluated = result.table.filter(~pl.col("skipped")).select("model", "prompt", "row")
    assert masks.select("model", "prompt", "row").sort(pl.all()).equals(evaluated.sort(pl.all()))


@pytest.mark.cuda
def test_cuda_evaluation_agrees_with_the_cpus(train_cache, finetuned_run, tmp_path):
    tables = {}
    for device in ("cpu", "cuda"):
        config = EvaluateConfig(
            train_cache, tmp_path / device, (finetuned_run,), split="val", device=device
        )
        config.progress = False
        tables[device] = run_evaluate(config).table.filter(~pl.col("skipped"))
    cpu, cuda = (tables[d]["iou"].to_numpy() for d in ("cpu", "cuda"))
    assert len(cpu) == len(cuda) and np.mean(np.abs(cpu - cuda) < 1e-3) >= 0.95
