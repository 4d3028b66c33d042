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

Metrics (iou, dice, precision, recall, with their empty-denominator rule): `metrics`; the
masks are made and counted on the decoders' device (`batch`).

Skipped views: an oracle strategy (one that reads the ground truth) has no prompt for a view
without water. Such a (model, prompt, view) gets a row with `skipped` true and null metrics; it
is left out of every mean and counted in the report.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch
from tqdm import tqdm

from floodcache.cache.format import CacheError
from floodcache.cache.loading import LoadStats
from floodcache.cache.reader import Cache
from floodcache.cache.verify import check_cache
from floodcache.evaluate.batch import (
    EVAL_EPOCH,
    Outcome,
    Trial,
    batch_views,
    evaluate_batch,
    read_columns,
)
from floodcache.evaluate.config import EvaluateConfig
from floodcache.evaluate.table import (
    MASKS_SCHEMA,
    METADATA,
    SCHEMA,
    DamagedEvaluation,
    damaged,
    load_evaluation,
    load_masks,
    write_evaluation,
)
from floodcache.prompts import Prompt, PromptOptions, parse_prompts
from floodcache.sam import decoder as sam_decoder
from floodcache.sam.masks import decode_views
from floodcache.sam.precision import pick_device
from floodcache.train.runs import PRETRAINED, DecoderModel, checkpoint_sha256
from floodcache.train.weights import decoder_models
from floodcache.utils import outputs
from floodcache.utils.identity import identity_of as declared_identity
from floodcache.utils.identity import refuse_other

log = logging.getLogger(__name__)
EVAL_VERSION = 2  # bump when a metric or the table changes, so old evaluations are redone


@dataclass
class EvaluateResult:
    out: Path
    table: pl.DataFrame
    metadata: dict
    reused: bool  # a complete, matching evaluation was found in `out`


def identity_of(config: EvaluateConfig, cache: Cache, models: list[DecoderModel]) -> dict:
    """What makes an evaluation what it is: equal identities give equal tables. The fields
    `EvaluateConfig` declares, the cache's fingerprint, each model's sha256, and this code's
    version of the table and of its prompts' epoch."""
    return declared_identity(
        config,
        version=EVAL_VERSION,
        cache_fingerprint=cache.fingerprint,
        epoch=EVAL_EPOCH,
        models={m.name: m.sha256 for m in models},
    )


def run_evaluate(config: EvaluateConfig) -> EvaluateResult:
    """Evaluate every model on every view of the split with every prompt strategy.

    Reuses a complete evaluation in `config.out` made with the same identity; refuses to
    replace one made differently unless `config.overwrite`. One evaluate at a time writes
    `config.out` (`<out>.lock` beside it); a folder holding files floodcache did not write is
    refused.
    """
    out = config.folder
    outputs.refuse_foreign(out, _ours, "--out")
    with writing_evaluation(out):
        return _run_evaluate(config, out)


def _ours(path: Path) -> bool:
    """An evaluation's files, and the report's beside them (a report's default folder holds
    its evaluation; the report vets its own files and figures)."""
    return path.as_posix() in outputs.REPORT_FILES or path.parts[0] == outputs.FIGURES


def writing_evaluation(out: Path) -> outputs.ProcessLock:
    """`<out>.lock`, held while an evaluation is made and written to `out`: a second evaluate
    into the same folder stops at once, rather than one silently replacing the other."""
    return outputs.writing(out, "evaluate")


def _run_evaluate(config: EvaluateConfig, out: Path) -> EvaluateResult:
    strategies = parse_prompts(config.eval_prompts)
    with Cache.open(config.cache) as cache:
        models = decoder_models(cache, tuple(map(Path, config.decoders)))
        identity = identity_of(config, cache, models)
        try:
            if _earlier_evaluation(out, identity, config.overwrite) is not None:
                loaded = load_evaluation(out)
                load_masks(out)  # what a report of it reads too
                log.info("%s holds this evaluation already; reusing it", out)
                return EvaluateResult(out, *loaded, reused=True)
        except DamagedEvaluation:
            if not config.overwrite:
                raise
            log.warning("%s holds a damaged evaluation: evaluating again", out)
        rows = cache.rows(config.split)
        if not len(rows):
            raise CacheError(
                f"{config.cache} has no {config.split!r} views; counts per split (images, "
                f"views): {cache.counts()}; choose another --split"
            )
        check_cache(cache)  # and each view as it is read: no metric from a damaged cache
        start = time.perf_counter()
        outcome = _evaluate_views(cache, models, strategies, rows, config)
        table = pl.DataFrame(outcome.records, schema=SCHEMA, orient="row")
        masks = pl.DataFrame(outcome.masks, schema=MASKS_SCHEMA, orient="row")
        metadata = _metadata(config, cache, models, identity, table, outcome.seconds)
        metadata["seconds"]["total"] = time.perf_counter() - start
    write_evaluation(out, table, masks, metadata)
    return EvaluateResult(out, table, metadata, reused=False)


def _earlier_evaluation(out: Path, identity: dict, overwrite: bool) -> dict | None:
    """The metadata of a finished evaluation in `out` with this identity, else None.

    One made with another identity raises FileExistsError, unless `overwrite`.
    """
    if not (out / METADATA).is_file():
        return None  # nothing there, or an evaluation that never finished
    try:
        earlier = json.loads((out / METADATA).read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise damaged(out / METADATA, f"not valid JSON: {error}") from None
    if not isinstance(earlier, dict):
        raise damaged(out / METADATA, "not a JSON object")
    if overwrite and earlier.get("identity") != identity:
        return None
    refuse_other(
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
            m.name: self._ready(sam_decoder.build_mask_decoder(), m.weights) for m in models
        }

    def _ready(self, module: torch.nn.Module, state: dict) -> torch.nn.Module:
        return sam_decoder.load_module(module, state).eval().to(self.device)

    def decode(
        self,
        model: str,
        embeddings: torch.Tensor,
        views: dict,
        prompts: list[Prompt | None],
        multimask: bool,
    ) -> tuple[list[int], torch.Tensor, torch.Tensor]:
        """`masks.decode_views` with this model's decoder; embeddings: Bx256x64x64 float on
        this device."""
        return decode_views(
            self.prompt_encoder, self.mask_decoders[model], embeddings, views, prompts, multimask
        )


def _evaluate_views(cache: Cache, models, strategies, rows, config: EvaluateConfig) -> Outcome:
    """Every view of `rows` (ascending) in batches: its embeddings read once, in the
    background and in large reads (`Cache.load_embeddings`), a window of whole batches at a
    time (the next window read while this one is evaluated): memory holds two windows, however
    many views the split has."""
    decoders = Decoders(cache, models, config.device)
    trial = Trial(models, strategies, config.seed, PromptOptions(points=config.points))
    columns = read_columns(cache, rows)
    windows = _windows(len(rows), _window_views(cache, config.batch_size))
    loaders = deque([(windows[0], cache.load_embeddings(rows[windows[0]]))] if windows else [])
    outcome, read = Outcome(), LoadStats()
    bar = tqdm(total=len(rows), unit="view", desc="evaluate", disable=not config.progress)
    try:
        for number in range(len(windows)):
            if number + 1 < len(windows):  # read ahead while this window is evaluated
                ahead = windows[number + 1]
                loaders.append((ahead, cache.load_embeddings(rows[ahead])))
            window, loader = loaders[0]
            for start in range(window.start, window.stop, config.batch_size):
                part = slice(start, min(start + config.batch_size, window.stop))
                held = slice(part.start - window.start, part.stop - window.start)
                loader.wait(held.stop)  # checked as read: nothing of a damaged view is used
                views = batch_views(cache, columns, part)
                embeddings = torch.from_numpy(loader.array[held]).to(decoders.device).float()
                evaluate_batch(decoders, trial, views, embeddings, outcome)
                bar.update(part.stop - part.start)
            loaders.popleft()[1].close()
            stats = loader.stats
            read = LoadStats(
                read.views + stats.views, read.bytes + stats.bytes, read.seconds + stats.seconds
            )
    finally:
        bar.close()
        for _, loader in loaders:
            loader.close()
    log.info("embeddings read: %s", read.line())
    return outcome


WINDOW_BYTES = 256 << 20  # embeddings read per window: large reads, memory bounded


def _window_views(cache: Cache, batch_size: int) -> int:
    """Views a window holds: about WINDOW_BYTES of embeddings, in whole batches."""
    dataset = cache.file["embeddings"]
    view_bytes = dataset.dtype.itemsize * int(np.prod(dataset.shape[1:]))
    return max(1, WINDOW_BYTES // view_bytes // batch_size) * batch_size


def _windows(count: int, size: int) -> list[slice]:
    return [slice(start, min(start + size, count)) for start in range(0, count, size)]


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
                "cache_fingerprint": (m.record and m.record.cache_fingerprint) or cache.fingerprint,
            }
            for m in models
        },
        "views": int(table.filter(pl.col("model") == PRETRAINED)["row"].n_unique()),
        "skipped": int(table["skipped"].sum()),
        "seconds": {"per_model": seconds},
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
