"""`report`: an evaluation (per-view metrics table) -> report.md with its figures beside it.

Given a cache and runs, `run_report` evaluates them first (reusing a complete, matching
evaluation), so it is the one command to run after `train`. The report holds: the data (audit,
splits, the cache's config and fingerprint), per-prompt tables of pretrained vs fine-tuned
metrics, the prompt strategies side by side, metric histograms and mean bars, training curves,
failure galleries (worst views, most helped and hurt by fine-tuning), IoU against water
fraction and image size, and the time each step took. Figures go to `OUT/figures/`.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from floodcache import failures, figures, markdown
from floodcache.atomic_write import write_whole
from floodcache.audit import AuditReport, audit_folder
from floodcache.cache import Cache, CacheError
from floodcache.evaluate import (
    Decoders,
    EvaluateConfig,
    load_evaluation,
    recorded_masks,
    run_evaluate,
)
from floodcache.metrics import METRICS, summarize
from floodcache.prompts import PROMPTS
from floodcache.runs import (
    PRETRAINED,
    RANDOM_WEIGHTS,
    DecoderModel,
    load_run,
    pretrained,
    read_history,
)

NAMES = {"iou": "IoU", "dice": "Dice", "precision": "precision", "recall": "recall"}


@dataclass
class ReportConfig:
    """What `report` needs: an evaluation folder, or a cache and runs to evaluate first."""

    out: Path  # report folder: report.md and figures/
    metrics: Path | None = None  # evaluation folder; default: `out`
    cache: Path | None = None  # evaluate first (a complete, matching evaluation is reused)
    decoders: tuple[Path, ...] = ()  # fine-tuned run folders (with `cache`)
    prompts: str = ",".join(PROMPTS)
    split: str = "test"
    gallery: int = 4  # worst views shown per model and prompt
    changes: int = 3  # views fine-tuning helped most (and hurt most), per run and prompt
    device: str | None = None
    overwrite: bool = False  # let evaluate replace an evaluation made differently
    progress: bool = True


@dataclass
class ReportResult:
    report: Path  # report.md
    figures: list[Path]
    evaluation: Path  # the evaluation folder it was made from
    reused: bool  # the evaluation was found complete, not recomputed


@dataclass
class Material:
    """Everything the sections read, and the figures they have written so far."""

    config: ReportConfig
    cache: Cache
    table: pl.DataFrame
    metadata: dict
    models: list[DecoderModel]
    summary: pl.DataFrame
    audit: AuditReport | None
    figures: list[Path] = field(default_factory=list)
    _masks: dict = field(default_factory=dict)
    _decoders: Decoders | None = None

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.models]

    @property
    def prompts(self) -> list[str]:
        return self.metadata["identity"]["prompts"]

    def figure(self, path: Path, caption: str) -> str:
        """Record a written figure; its markdown image line."""
        self.figures.append(path)
        return f"![{caption}]({path.relative_to(self.config.out).as_posix()})"

    def predict(self, model: str, records: list[dict]) -> None:
        """Decode `model` on table rows (one prompt strategy) not decoded yet, in one batch.

        Rows may come from another model: a view's prompt is the same for every model.
        """
        todo = [r for r in records if (model, r["prompt"], r["row"]) not in self._masks]
        if not todo:
            return
        if self._decoders is None:
            self._decoders = Decoders(self.cache, self.models, self.config.device)
        for record, mask in zip(
            todo, recorded_masks(self.cache, self._decoders, model, todo), strict=True
        ):
            self._masks[(model, record["prompt"], record["row"])] = mask

    def prediction(self, model: str, record: dict) -> np.ndarray:
        """HxW bool mask of `model` on a table row's view (decoded by `predict` if needed)."""
        self.predict(model, [record])
        return self._masks[(model, record["prompt"], record["row"])]


def run_report(config: ReportConfig, audit: AuditReport | None = None) -> ReportResult:
    """Evaluate when given a cache (reusing a matching evaluation), then write report.md.

    `audit`: the data's audit, when the caller has one; else the data folder named in the
    cache's config is audited again.
    """
    start = time.perf_counter()
    metrics_dir = Path(config.metrics or config.out)
    if config.cache is not None:
        result = run_evaluate(
            EvaluateConfig(
                cache=config.cache,
                out=metrics_dir,
                decoders=tuple(config.decoders),
                prompts=config.prompts,
                split=config.split,
                device=config.device,
                overwrite=config.overwrite,
                progress=config.progress,
            )
        )
        table, metadata, reused = result.table, result.metadata, result.reused
    elif config.decoders:
        raise ValueError("--decoder needs --cache: the runs are evaluated on that cache")
    else:
        (table, metadata), reused = load_evaluation(metrics_dir), True
    with _open_cache(Path(config.cache or metadata["cache"]), metadata) as cache:
        material = Material(
            config, cache, table, metadata, _models(cache, metadata), summarize(table), audit
        )
        lines = _header(material, metrics_dir)
        for section in SECTIONS:
            lines += ["", *section(material)]
        lines += ["", *_timings(material, reused, time.perf_counter() - start)]
    report = Path(config.out) / "report.md"
    write_whole(report, lambda tmp: tmp.write_text("\n".join(lines) + "\n"))
    return ReportResult(report, material.figures, metrics_dir, reused)


def _open_cache(path: Path, metadata: dict) -> Cache:
    if not path.exists():
        raise FileNotFoundError(
            f"the evaluation's cache {path} is gone: pass --cache FILE.h5 (the same cache)"
        )
    cache = Cache.open(path)
    if cache.fingerprint != metadata["identity"]["cache_fingerprint"]:
        cache.close()
        raise CacheError(
            f"{path} is not the cache this evaluation was made from (fingerprints differ): "
            "pass the right --cache, or evaluate again with --overwrite"
        )
    return cache


def _models(cache: Cache, metadata: dict) -> list[DecoderModel]:
    """The evaluated decoders, checked to be unchanged since the evaluation."""
    models = []
    for name, info in metadata["models"].items():
        model = pretrained(cache) if info["run"] is None else load_run(Path(info["run"]))
        if model.sha256 != info["decoder_sha256"]:
            raise ValueError(
                f"{info['run'] or name}'s decoder changed since the evaluation: evaluate again "
                "(`python cli.py report --cache ... --decoder ... --overwrite`)"
            )
        models.append(model)
    return models


def _header(material: Material, metrics_dir: Path) -> list[str]:
    meta = material.metadata
    lines = ["# floodcache report: pretrained vs fine-tuned SAM mask decoder", ""]
    if meta["checkpoint_sha256"] == RANDOM_WEIGHTS:
        lines += [
            "> **WARNING: RANDOM WEIGHTS. EVERY NUMBER IN THIS REPORT IS MEANINGLESS.** The cache",
            "> was embedded with an untrained SAM (`--random-weights`): this report only shows",
            "> that the pipeline runs. Embed with a real checkpoint for numbers that mean",
            "> anything.",
            "",
        ]
    table_link = Path(os.path.relpath(metrics_dir, material.config.out)).as_posix()
    runs = [m for m in material.models if m.run is not None]
    lines += [
        f"Split `{meta['identity']['split']}`: {meta['views']} views, each evaluated with every "
        f"prompt strategy and every model: `{PRETRAINED}` (the decoder of SAM's checkpoint)"
        + "".join(f", `{m.name}` (fine-tuned on {', '.join(m.trained_prompts)})" for m in runs)
        + ".",
        "",
        "Prompts marked * are oracle prompts: made from the ground truth, they measure SAM with a "
        "perfect annotator, not a deployed system; only `none` needs no ground truth. An oracle "
        "prompt does not exist for a view without water: such views are *skipped* (counted, "
        "left out of every mean). Empty denominators: a metric is 1 when prediction and truth "
        "are both empty, else 0. Metrics are computed at the original image resolution.",
        "",
        f"Per-view table: [{table_link}/metrics.csv]({table_link}/metrics.csv) (also Parquet), "
        "with each view's exact prompt in original-image pixels.",
    ]
    return lines


def _data_section(material: Material) -> list[str]:
    cache = material.cache
    config = cache.config
    identity = dict(config["identity"])
    identity["views"] = f"{len(identity['views'])} (image, view, split) entries"
    if identity.get("augmentation_recipe"):
        identity["augmentation_recipe"] = "albumentations recipe (recorded in the cache)"
    counts = cache.counts()
    split_rows = [[split, images, views] for split, (images, views) in counts.items()]
    lines = ["## Data", "", "### Audit", "", "```", _audit_summary(material), "```"]
    lines += ["", "### Splits", "", *markdown.table(["split", "images", "views"], split_rows), ""]
    lines += [
        "### Cache",
        "",
        f"`{cache.path}`: model `{cache.model_type}`, checkpoint sha256 "
        f"`{material.metadata['checkpoint_sha256']}`, fingerprint `{cache.fingerprint}`.",
        "",
        "```json",
        json.dumps({"identity": identity, "run": config.get("run")}, indent=1),
        "```",
        "",
        f"Built by: `{config.get('command', '?')}`",
    ]
    return lines


def _audit_summary(material: Material) -> str:
    if material.audit is not None:
        return material.audit.summary()
    run = material.cache.config.get("run", {})
    folders = [run.get(k) for k in ("data_dir", "images", "masks")]
    if not any(folder and Path(folder).exists() for folder in folders):
        return f"the data folder {folders[0] or folders[1]} is not here: audit not repeated"
    paths = [Path(f) if f else None for f in folders]
    return audit_folder(*paths, run.get("on_mismatch", "exclude")).summary()


def _results_section(material: Material) -> list[str]:
    lines = ["## Results per prompt", "", "mean ± std (median) over the evaluated views."]
    header = ["model", "views", "skipped", *NAMES.values(), "IoU vs pretrained", "Dice vs pre."]
    for prompt in material.prompts:
        rows = material.summary.filter(pl.col("prompt") == prompt).to_dicts()
        base = next((r for r in rows if r["model"] == PRETRAINED), {})
        body = [
            [r["model"], r["views"], r["skipped"], *(markdown.stat(r, m) for m in METRICS)]
            + [
                "–" if r is base else markdown.relative(r[f"{m}_mean"], base.get(f"{m}_mean"))
                for m in ("iou", "dice")
            ]
            for r in rows
        ]
        lines += ["", f"### {markdown.prompt_title(prompt)}: {PROMPTS[prompt].description}", ""]
        lines += markdown.table(header, body)
    return lines


def _strategies_section(material: Material) -> list[str]:
    summary = material.summary
    header = ["prompt", "oracle", *(f"{name} IoU" for name in material.names)]
    rows = []
    for prompt in material.prompts:
        by_model = {r["model"]: r for r in summary.filter(pl.col("prompt") == prompt).to_dicts()}
        rows.append(
            [markdown.prompt_title(prompt), "yes" if PROMPTS[prompt].oracle else "no"]
            + [markdown.stat(by_model[name], "iou") for name in material.names]
        )
    path = figures.mean_bars(summary, material.names, material.config.out / "figures/means.png")
    lines = ["## Prompt strategies side by side", "", *markdown.table(header, rows), ""]
    return lines + [material.figure(path, "mean IoU and Dice per prompt and model")]


def _distributions_section(material: Material) -> list[str]:
    lines = ["## Distributions", "", "Per-view metrics, one panel per prompt, one line per model."]
    for metric in METRICS:
        path = material.config.out / f"figures/hist_{metric}.png"
        figures.metric_histograms(material.table, metric, material.names, path)
        lines += ["", material.figure(path, f"{metric} histograms")]
    return lines


def _training_section(material: Material) -> list[str]:
    runs = [m for m in material.models if m.run is not None]
    if not runs:
        return ["## Training", "", "No fine-tuned run was evaluated."]
    histories = {m.name: read_history(m.run) for m in runs}
    rows = [
        [
            m.name,
            ", ".join(m.trained_prompts),
            histories[m.name].height,
            m.record.get("best_epoch"),
            f"{m.record.get('best_val_iou', float('nan')):.3f}",
            f"`{m.run}`",
        ]
        for m in runs
    ]
    path = figures.training_curves(histories, material.config.out / "figures/training.png")
    header = ["run", "prompts", "epochs", "best epoch", "best val IoU", "folder"]
    note = "Train dashed, validation solid; dotted: the kept epoch (best validation IoU)."
    lines = ["## Training", "", *markdown.table(header, rows), "", note, ""]
    return lines + [material.figure(path, "training curves")]


def _timings(material: Material, reused: bool, report_seconds: float) -> list[str]:
    config = material.cache.config
    embed = config.get("embed_seconds")
    views = len(material.cache)
    rows = [
        [
            "embed",
            f"{embed:.1f}" if embed is not None else "not recorded",
            f"{views} views, the run that completed the cache",
        ],
    ]
    for model in (m for m in material.models if m.run is not None):
        history = read_history(model.run)
        rows.append(
            [f"train `{model.name}`", f"{history['seconds'].sum():.1f}", f"{history.height} epochs"]
        )
    seconds = material.metadata["seconds"]
    per_model = ", ".join(f"{name} {s:.1f} s" for name, s in seconds["per_model"].items())
    detail = f"decoding: {per_model}" + ("; reused, not recomputed" if reused else "")
    rows.append(["evaluate", f"{seconds['total']:.1f}", detail])
    rows.append(["report", f"{report_seconds:.1f}", "including the galleries' decoder runs"])
    return ["## Timings", "", *markdown.table(["step", "seconds", "detail"], rows)]


SECTIONS = (
    _data_section,
    _results_section,
    _strategies_section,
    _distributions_section,
    _training_section,
    failures.failures_section,
)
