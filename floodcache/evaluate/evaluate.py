"""`evaluate`: pretrained vs fine-tuned mask decoders -> one Polars table of per-view metrics.

For every view of a split, every prompt strategy and every model (`pretrained`, the decoder
stored in the cache, and each fine-tuned run) the table holds one row: the metrics of SAM's
mask against the view's full-resolution ground truth, and the exact prompt used, in
original-image pixels, so that

    SamPredictor(sam).set_image(image)
    masks, scores, _ = predictor.predict(points, labels, box, multimask_output=multimask)
    mask = masks[scores.argmax()]

on the view's image gives the same mask (up to the cache's float16 storage of the embedding).

Prompts are made from the full-resolution mask with the strategy's seeded stream at epoch 0
(`EVAL_EPOCH`), so every model sees the same prompts and a rerun gives the same table.

Metrics (iou, dice, precision, recall, with their empty-denominator rule): `floodcache.metrics`.

Skipped views: an oracle strategy (one that reads the ground truth) has no prompt for a view
without water. Such a (model, prompt, view) gets a row with `skipped` true and null metrics; it
is left out of every mean and counted in the report.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch
from tqdm import tqdm

from floodcache.cache.format import EMBEDDING_SHAPE, CacheError
from floodcache.cache.reader import Cache
from floodcache.cache.verify import check_views
from floodcache.evaluate.config import EvaluateConfig
from floodcache.evaluate.metrics import mask_metrics
from floodcache.evaluate.table import (
    METADATA,
    SCHEMA,
    load_evaluation,
    prompt_from_row,
    write_evaluation,
)
from floodcache.prompts import PromptOptions, PromptStrategy, make_prompt, parse_prompts
from floodcache.sam import decoder as sam_decoder
from floodcache.sam.precision import pick_device
from floodcache.train.runs import PRETRAINED, DecoderModel, checkpoint_sha256, decoder_models
from floodcache.utils.differences import refuse_if_different

log = logging.getLogger(__name__)
EVAL_VERSION = 1  # bump when a metric or the table changes, so old evaluations are redone
EVAL_EPOCH = 0  # the prompt stream's epoch at evaluation: the same prompts for every model


@dataclass
class EvaluateResult:
    out: Path
    table: pl.DataFrame
    metadata: dict
    reused: bool  # a complete, matching evaluation was found in `out`


def identity_of(config: EvaluateConfig, cache: Cache, models: list[DecoderModel]) -> dict:
    """What makes an evaluation what it is: equal identities give equal tables."""
    return {
        "version": EVAL_VERSION,
        "cache_fingerprint": cache.fingerprint,
        "split": config.split,
        "prompts": [s.name for s in parse_prompts(config.eval_prompts)],
        "seed": config.seed,
        "points": config.points,
        "epoch": EVAL_EPOCH,
        "models": {m.name: m.sha256 for m in models},
    }


def run_evaluate(config: EvaluateConfig) -> EvaluateResult:
    """Evaluate every model on every view of the split with every prompt strategy.

    Reuses a complete evaluation in `config.out` made with the same identity; refuses to
    replace one made differently unless `config.overwrite`.
    """
    out = Path(config.out)
    strategies = parse_prompts(config.eval_prompts)
    with Cache.open(config.cache) as cache:
        models = decoder_models(cache, tuple(map(Path, config.decoders)))
        identity = identity_of(config, cache, models)
        if _earlier_evaluation(out, identity, config.overwrite) is not None:
            log.info("%s holds this evaluation already; reusing it", out)
            return EvaluateResult(out, *load_evaluation(out), reused=True)
        rows = cache.rows(config.split)
        if not len(rows):
            raise CacheError(
                f"{config.cache} has no {config.split!r} views; counts per split (images, "
                f"views): {cache.counts()}; choose another --split"
            )
        check_views(cache, (config.split,))  # no metric from a damaged cache
        start = time.perf_counter()
        records, seconds = _evaluate_views(cache, models, strategies, rows, config)
        table = pl.DataFrame(records, schema=SCHEMA, orient="row")
        metadata = _metadata(config, cache, models, identity, table, seconds)
        metadata["seconds"]["total"] = time.perf_counter() - start
    write_evaluation(out, table, metadata)
    return EvaluateResult(out, table, metadata, reused=False)


def _earlier_evaluation(out: Path, identity: dict, overwrite: bool) -> dict | None:
    """The metadata of a finished evaluation in `out` with this identity, else None.

    One made with another identity raises FileExistsError, unless `overwrite`.
    """
    if not (out / METADATA).is_file():
        return None  # nothing there, or an evaluation that never finished
    earlier = json.loads((out / METADATA).read_text())
    if overwrite and earlier.get("identity") != identity:
        return None
    refuse_if_different(
        earlier.get("identity", {}),
        identity,
        f"{out} holds an evaluation made differently",
        "choose another --out, or pass --overwrite to replace it",
        FileExistsError,
        ("earlier", "now"),
    )
    return earlier


class Decoders:
    """SAM's prompt encoder (from the cache) and each model's mask decoder, on one device."""

    def __init__(self, cache: Cache, models: list[DecoderModel], device: str | None = None):
        self.device = pick_device(device)
        self.prompt_encoder = self._ready(
            sam_decoder.build_prompt_encoder(), cache.sam_state("prompt_encoder")
        )
        self.mask_decoders = {
            m.name: self._ready(sam_decoder.build_mask_decoder(), m.state) for m in models
        }

    def _ready(self, module: torch.nn.Module, state: dict) -> torch.nn.Module:
        return sam_decoder.load_module(module, state).eval().to(self.device)

    def predict(self, model: str, embeddings, views: dict, prompts, multimask: bool) -> list:
        """`predict_views` with this model's decoder; embeddings: Bx256x64x64 (any device)."""
        embeddings = torch.as_tensor(embeddings).to(self.device).float()
        return sam_decoder.predict_views(
            self.prompt_encoder, self.mask_decoders[model], embeddings, views, prompts, multimask
        )


def _evaluate_views(cache: Cache, models, strategies, rows, config: EvaluateConfig):
    """Table rows (dicts, SCHEMA order) and decoding seconds per model."""
    decoders = Decoders(cache, models, config.device)
    options = PromptOptions(points=config.points)
    seconds = {m.name: 0.0 for m in models}
    records: list[dict] = []
    bar = tqdm(total=len(rows), unit="view", desc="evaluate", disable=not config.progress)
    for start in range(0, len(rows), config.batch_size):
        views = _views(cache, rows[start : start + config.batch_size])
        embeddings = torch.from_numpy(cache.embeddings(views["row"])).to(decoders.device)
        for strategy in strategies:
            prompts = [
                make_prompt(strategy, mask, config.seed, image_id, view, EVAL_EPOCH, options)
                for mask, image_id, view in zip(
                    views["mask"], views["image_id"], views["view"], strict=True
                )
            ]
            for model in models:
                tic = time.perf_counter()
                predictions = decoders.predict(
                    model.name, embeddings, views, prompts, strategy.multimask
                )
                seconds[model.name] += time.perf_counter() - tic
                records += _records(model, strategy, views, prompts, predictions)
        bar.update(len(views["row"]))
    bar.close()
    return records, seconds


def _views(cache: Cache, rows: np.ndarray) -> dict:
    """Per-view columns of `rows` as lists, plus each full-resolution HxW {0,1} mask."""
    rows = np.sort(rows)
    view = {"row": rows, "mask": [cache.full_mask(int(r)) for r in rows]}
    for name in ("image_id", "view", "split", "image_file", "original_size", "input_size"):
        view[name] = cache.column(name)[rows].tolist()
    return view


def recorded_masks(cache: Cache, decoders: Decoders, model: str, records: list[dict]) -> list:
    """Rerun `model` on table rows with their recorded prompts: HxW bool masks (original size).

    records: rows of the evaluation table (dicts, not skipped) of one prompt strategy and
    distinct views; decoded in one batch.
    """
    rows = np.array([r["row"] for r in records])
    order = np.argsort(rows)  # HDF5 reads ascending rows
    embeddings = np.empty((len(rows), *EMBEDDING_SHAPE), np.float16)
    embeddings[order] = cache.embeddings(rows[order])
    views = {name: cache.read(name, rows[order])[np.argsort(order)].tolist()
             for name in ("input_size", "original_size")}  # fmt: skip
    prompts = [prompt_from_row(r) for r in records]
    predictions = decoders.predict(model, embeddings, views, prompts, records[0]["multimask"])
    return [mask for mask, _ in predictions]


def _records(model: DecoderModel, strategy: PromptStrategy, views, prompts, predictions) -> list:
    """One table row (dict) per view of the batch."""
    records = []
    for i, (prompt, predicted) in enumerate(zip(prompts, predictions, strict=True)):
        height, width = views["original_size"][i]
        record = {
            "model": model.name,
            "prompt": strategy.name,
            "oracle": strategy.oracle,
            "multimask": strategy.multimask,
            "skipped": predicted is None,
            "image_id": views["image_id"][i],
            "view": views["view"][i],
            "split": views["split"][i],
            "row": int(views["row"][i]),
            "image_file": views["image_file"][i],
            "height": height,
            "width": width,
        }
        if predicted is None:
            metrics = {"water_fraction": float(views["mask"][i].mean())}
        else:
            metrics = mask_metrics(predicted[0], views["mask"][i])
            metrics["predicted_iou"] = predicted[1]
        prompt_json = {} if prompt is None else prompt.to_dict()
        prompt_json = {k: None if v is None else json.dumps(v) for k, v in prompt_json.items()}
        records.append({name: (record | metrics | prompt_json).get(name) for name in SCHEMA})
    return records


def _metadata(config, cache: Cache, models, identity, table: pl.DataFrame, seconds) -> dict:
    return {
        "identity": identity,
        "cache": str(Path(config.cache).resolve()),
        "model_type": cache.model_type,
        "checkpoint_sha256": checkpoint_sha256(cache),
        "models": {
            m.name: {
                "run": None if m.run is None else str(m.run.resolve()),
                "decoder_sha256": m.sha256,
                "trained_prompts": m.trained_prompts,
                "cache_fingerprint": m.record.get("cache_fingerprint", cache.fingerprint),
            }
            for m in models
        },
        "views": int(table.filter(pl.col("model") == PRETRAINED)["row"].n_unique()),
        "skipped": int(table["skipped"].sum()),
        "seconds": {"per_model": seconds},
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
