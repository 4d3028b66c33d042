"""`run`: audit -> embed -> train -> evaluate -> report, skipping steps already done.

Each step gets its own stage's config, nested in `PipelineConfig`; `layout` puts their files
under `out_dir` (default: the working directory, so they land where the single commands put
them):

    cache/NAME.h5            embed (resumable; complete and matching: nothing to do)
    runs/NAME-PROMPTS/       train (kept when its config.json matches the cache and settings)
    reports/NAME/            audit.csv, the evaluation (reused when it matches), report.md

Defaults: ViT-B, 3 augmented views per training image, 15 epochs, and one decoder trained on
the mix `point,box,none`, so that one fine-tuned model is compared with the pretrained decoder
on every prompt strategy, and the same decoder also segments without a prompt (`predict`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from floodcache.cache.reader import Cache
from floodcache.embed.plan import audit_data
from floodcache.embed.run import run_embed
from floodcache.pipeline.config import PipelineConfig, layout
from floodcache.pipeline.early import refuse_a_changed_cache
from floodcache.report.material import ReportResult
from floodcache.report.report import claim_report_folder, run_report
from floodcache.sam.checkpoints import resolve_checkpoint
from floodcache.sam.precision import pick_device, resolve_precision
from floodcache.train import runs
from floodcache.train.config import TrainConfig
from floodcache.train.run import run_train
from floodcache.utils.identity import refuse_other

log = logging.getLogger(__name__)


@dataclass
class PipelineResult:
    cache: Path
    run: Path
    report: ReportResult
    steps: dict[str, str] = field(default_factory=dict)  # step -> what it did, and how long


def run_pipeline(config: PipelineConfig) -> PipelineResult:
    """Run every step in order; a step whose output is complete and matching is skipped."""
    embed = config.embed
    resolve_checkpoint(embed.model_type, embed.checkpoint, embed.random_weights)
    cache, run, report_dir = layout(config)
    claim_report_folder(report_dir, "--name")  # before audit.csv: nothing of the user's replaced
    refuse_a_changed_cache(embed, "choose another --name (the cache is never replaced)")
    steps: dict[str, str] = {}

    tic = time.perf_counter()
    audit = audit_data(embed)
    audit.write_csv(report_dir / "audit.csv")
    steps["audit"] = _done(f"{len(audit.usable)} usable pairs, {report_dir / 'audit.csv'}", tic)

    tic = time.perf_counter()
    embedded = run_embed(embed, audit)  # the data is read once
    what = f"{embedded.embedded} views encoded" if embedded.embedded else "cache complete, kept"
    steps["embed"] = _done(f"{what}: {cache}", tic)

    tic = time.perf_counter()
    steps["train"] = _done(_train(config.train), tic)

    tic = time.perf_counter()
    report = run_report(config.report)  # the audit as the cache recorded it
    kept = "evaluation kept" if report.reused else "evaluated"
    steps["evaluate + report"] = _done(f"{kept}; {report.report}", tic)
    return PipelineResult(cache, run, report, steps)


def _done(what: str, tic: float) -> str:
    message = f"{what} ({time.perf_counter() - tic:.1f} s)"
    log.info(message)
    return message


def _train(config: TrainConfig) -> str:
    """Train unless the run folder holds a decoder of this cache and these settings; what was
    done."""
    run = config.run_folder
    if runs.is_finished(run):
        old, new = runs.RunRecord.read(run).identity, _asked(config)
        if old == new:
            return f"{run} matches the cache and settings, kept"
        if not config.overwrite:
            refuse_other(
                old,
                new,
                f"{run} holds a decoder trained differently",
                "pass --overwrite to train it again, or choose another --name",
                FileExistsError,
                ("run has", "asked"),
            )
    result = run_train(config)
    return f"trained {run} (best epoch {result.best_epoch})"


def _asked(config: TrainConfig) -> dict:
    """The identity of the run `config` asks for, its precision resolved as `train` will
    resolve it on this device: a finished run records the precision it ran with."""
    with Cache.open(config.cache) as opened:
        fingerprint = opened.fingerprint
    precision = resolve_precision(config.precision, pick_device(config.device), "train")
    return runs.run_identity(replace(config, precision=precision), fingerprint)
