"""`run`: audit -> embed -> train -> evaluate -> report, skipping steps already done.

Layout under `out_dir` (default: the working directory, so the files land where the single
commands put them):

    cache/NAME.h5            embed (resumable; complete and matching: nothing to do)
    runs/NAME-PROMPTS/       train (kept when its config.json matches the cache and settings)
    reports/NAME/            audit.csv, the evaluation (reused when it matches), report.md

Defaults: ViT-B, 3 augmented views per training image, 15 epochs, and one decoder trained on
the mix `point,box,none`, so that one fine-tuned model is compared with the pretrained decoder
on every prompt strategy, and the same decoder also segments without a prompt (`predict`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from floodcache import runs
from floodcache.audit import audit_folder
from floodcache.cache import Cache, config_difference
from floodcache.embed import EmbedConfig, run_embed
from floodcache.prompts import PROMPTS
from floodcache.report import ReportConfig, ReportResult, run_report
from floodcache.train import LEARNING_SETTINGS, TrainConfig, run_train

log = logging.getLogger(__name__)


@dataclass
class PipelineConfig:
    """Everything `run` needs; each step gets its part."""

    data_dir: Path | None = None
    images: Path | None = None
    masks: Path | None = None
    on_mismatch: str = "exclude"
    checkpoint: Path | None = None
    random_weights: bool = False  # smoke runs only: every number is meaningless
    model_type: str = "vit_b"
    augment: int = 3  # extra views per training image
    epochs: int = 15
    prompts: str = "point,box,none"  # one decoder trained on this mix
    eval_prompts: str = ",".join(PROMPTS)  # every strategy, side by side in the report
    limit: int | None = None  # only the first N usable images (quick trials)
    seed: int = 0  # split, augmentation, prompts and training
    device: str | None = None
    out_dir: Path = Path(".")
    name: str = "flood"
    overwrite: bool = False  # retrain / re-evaluate when settings changed (never the cache)
    progress: bool = True


@dataclass
class PipelineResult:
    cache: Path
    run: Path
    report: ReportResult
    steps: dict[str, str] = field(default_factory=dict)  # step -> what it did, and how long


def layout(config: PipelineConfig) -> tuple[Path, Path, Path]:
    """(cache file, run folder, report folder) of a pipeline."""
    root = Path(config.out_dir)
    run_name = f"{config.name}-{config.prompts.replace(',', '+')}"
    return (
        root / "cache" / f"{config.name}.h5",
        root / "runs" / run_name,
        root / "reports" / config.name,
    )


def run_pipeline(config: PipelineConfig) -> PipelineResult:
    """Run every step in order; a step whose output is complete and matching is skipped."""
    cache, run, report_dir = layout(config)
    steps: dict[str, str] = {}

    tic = time.perf_counter()
    audit = audit_folder(
        config.data_dir, config.images, config.masks, config.on_mismatch, config.progress
    )
    audit.write_csv(report_dir / "audit.csv")
    steps["audit"] = _done(f"{len(audit.usable)} usable pairs, {report_dir / 'audit.csv'}", tic)

    tic = time.perf_counter()
    embedded = run_embed(_embed_config(config, cache), audit)  # the data is read once
    what = f"{embedded.embedded} views encoded" if embedded.embedded else "cache complete, kept"
    steps["embed"] = _done(f"{what}: {cache}", tic)

    tic = time.perf_counter()
    steps["train"] = _done(_train(config, cache, run), tic)

    tic = time.perf_counter()
    report = run_report(
        ReportConfig(
            out=report_dir,
            cache=cache,
            decoders=(run,),
            prompts=config.eval_prompts,
            device=config.device,
            overwrite=config.overwrite,
            progress=config.progress,
        ),
        audit=audit,
    )
    kept = "evaluation kept" if report.reused else "evaluated"
    steps["evaluate + report"] = _done(f"{kept}; {report.report}", tic)
    return PipelineResult(cache, run, report, steps)


def _done(what: str, tic: float) -> str:
    message = f"{what} ({time.perf_counter() - tic:.1f} s)"
    log.info(message)
    return message


def _embed_config(config: PipelineConfig, cache: Path) -> EmbedConfig:
    return EmbedConfig(
        cache=cache,
        data_dir=config.data_dir,
        images=config.images,
        masks=config.masks,
        checkpoint=config.checkpoint,
        random_weights=config.random_weights,
        model_type=config.model_type,
        augment=config.augment,
        seed=config.seed,
        on_mismatch=config.on_mismatch,
        limit=config.limit,
        device=config.device,
        progress=config.progress,
    )


def _train(config: PipelineConfig, cache: Path, run: Path) -> str:
    """Train unless `run` holds a decoder of this cache and these settings; what was done."""
    train_config = TrainConfig(
        cache=cache,
        out=run,
        prompt=config.prompts,
        epochs=config.epochs,
        seed=config.seed,
        device=config.device,
        overwrite=config.overwrite,
        progress=config.progress,
    )
    diff = run_difference(run, cache, train_config)
    if diff == []:
        return f"{run} matches the cache and settings, kept"
    if diff and not config.overwrite:
        raise FileExistsError(
            f"{run} holds a decoder trained differently:\n  "
            + "\n  ".join(diff)
            + "\npass --overwrite to train it again, or choose another --name"
        )
    result = run_train(train_config)
    return f"trained {run} (best epoch {result.best_epoch})"


def run_difference(run: Path, cache: Path, config: TrainConfig) -> list[str] | None:
    """None when `run` holds no finished run; else how it differs from `config` on `cache`.

    An empty list means the run was trained from this very cache with these settings.
    """
    if not runs.is_finished(run):
        return None
    record = json.loads((Path(run) / runs.RECORD).read_text())
    with Cache.open(cache) as opened:
        fingerprint = opened.fingerprint
    settings = asdict(config)
    old = {k: record["config"].get(k) for k in LEARNING_SETTINGS}
    old["cache_fingerprint"] = record.get("cache_fingerprint")
    new = {k: settings[k] for k in LEARNING_SETTINGS} | {"cache_fingerprint": fingerprint}
    return config_difference(old, new, "run has", "asked")
