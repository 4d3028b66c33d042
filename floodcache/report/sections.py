"""The report's sections on the data, the results per prompt, the prompt strategies side by
side, the metrics' distributions and the training runs (`failures` adds the failure
analysis). Each takes the `Material` and returns markdown lines."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from floodcache.data.audit import audit_folder
from floodcache.evaluate.metrics import METRICS
from floodcache.prompts import PROMPTS
from floodcache.report import figures, markdown
from floodcache.report.material import Material
from floodcache.train.runs import PRETRAINED, read_history

NAMES = {"iou": "IoU", "dice": "Dice", "precision": "precision", "recall": "recall"}


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
    on_mismatch = run.get("on_mismatch", "exclude")
    as_embedded = {k: run[k] for k in ("allow_outside_paths", "max_pixels") if k in run}
    return audit_folder(*paths, on_mismatch, **as_embedded).summary()


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


SECTIONS = (
    _data_section,
    _results_section,
    _strategies_section,
    _distributions_section,
    _training_section,
)
