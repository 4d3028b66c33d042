"""The report's sections after the headline (`headline`): the prompt strategies side by side,
the data, the metrics' distributions and the training runs (`failures` and `galleries` add
the failure analysis); and the appendix with the configuration. Each takes the `Material`
and returns markdown lines."""

from __future__ import annotations

import json

import polars as pl

from floodcache.data import audit_record
from floodcache.evaluate.metrics import METRIC_NAMES, METRICS
from floodcache.prompts import PROMPTS
from floodcache.report import figures, markdown
from floodcache.report.material import Material
from floodcache.train.runs import PRETRAINED, read_history
from floodcache.utils.program import command, option


def strategies_section(material: Material) -> list[str]:
    """Mean IoU of every model per prompt, and each run's paired change, in one table."""
    header = ["prompt", "oracle", "views"]
    header += [f"{markdown.code(name)} IoU" for name in material.names]
    header += [f"{markdown.code(run.name)} change" for run in material.runs]
    rows = []
    for prompt in material.prompts:
        cells = [material.interval(name, prompt, "iou") for name in material.names]
        changes = [material.paired(run.name, prompt, "iou") for run in material.runs]
        rows.append(
            [
                markdown.prompt_title(prompt),
                "yes" if PROMPTS[prompt].oracle else "no",
                material.evaluated(PRETRAINED, prompt).height,
                *(c.text() if c else "–" for c in cells),
                *(c.difference.signed() if c else "–" for c in changes),
            ]
        )
    path = figures.mean_bars(_means(material), material.names, _figure(material, "means"))
    lines = ["## Prompt strategies side by side", "", *markdown.table(header, rows), ""]
    lines += ["Mean IoU [95% interval]; change: the paired mean of per-view differences.", ""]
    return lines + [material.figure(path, "mean IoU and Dice per prompt and model")]


def _means(material: Material) -> pl.DataFrame:
    """model, prompt, oracle, metric, mean, low, high for IoU and Dice."""
    rows = []
    for prompt in material.prompts:
        for model in material.names:
            for metric in ("iou", "dice"):
                interval = material.interval(model, prompt, metric)
                if interval is not None:
                    # no bar where the tables show no interval (too few views)
                    low, high = (interval.low, interval.high) if interval.shown else (None, None)
                    numbers = {"mean": interval.mean, "low": low, "high": high}
                    oracle = PROMPTS[prompt].oracle
                    rows.append(
                        {"model": model, "prompt": prompt, "oracle": oracle, "metric": metric}
                        | numbers
                    )
    return pl.DataFrame(rows)


def _figure(material: Material, name: str):
    return material.config.folder / "figures" / f"{name}.png"


def data_section(material: Material) -> list[str]:
    cache = material.cache
    counts = cache.counts()
    split_rows = [[split, images, views] for split, (images, views) in counts.items()]
    lines = ["## Data", "", "### Audit", "", *markdown.fence(_audit_summary(material))]
    lines += ["", "### Splits", "", *markdown.table(["split", "images", "views"], split_rows), ""]
    return lines + [
        "### Cache",
        "",
        f"{markdown.code(material.relative(cache.path))} (from this folder): model "
        f"{markdown.code(cache.model_type)}, checkpoint sha256 "
        f"{markdown.code(material.metadata['checkpoint_sha256'])}, "
        f"fingerprint `{cache.fingerprint}`; its configuration is in the appendix.",
    ]


def _audit_summary(material: Material) -> str:
    if material.audit is not None:
        return audit_record.summary(material.audit)
    return (
        "the audit is not recorded in this cache (embedded by an older floodcache): "
        f"{command('audit', '...')} on its data shows it, or "
        f"{command('embed', option('overwrite'), '...')} records it"
    )


def distributions_section(material: Material) -> list[str]:
    lines = ["## Distributions", "", "Per-view metrics, one panel per prompt, one bar per model."]
    for metric in METRICS:
        path = _figure(material, f"hist_{metric}")
        figures.metric_histograms(material.table, metric, material.names, path)
        lines += ["", material.figure(path, f"{METRIC_NAMES[metric]} histograms")]
    return lines


def training_section(material: Material) -> list[str]:
    runs = material.runs
    if not runs:
        return ["## Training", "", "No fine-tuned run was evaluated."]
    histories = {m.name: read_history(m.folder) for m in runs}
    rows = [
        [
            markdown.text(m.name),
            markdown.text(", ".join(m.trained_prompts)),
            histories[m.name].height,
            m.run_record.best_epoch,
            f"{_or_nan(m.run_record.best_val_iou):.3f}",
            markdown.link(material.relative(m.folder), material.relative(m.folder)),
        ]
        for m in runs
    ]
    path = figures.training_curves(histories, _figure(material, "training"))
    header = ["run", "prompts", "epochs", "best epoch", "best val IoU", "folder"]
    note = "Train dashed, validation solid; dotted: the kept epoch (best validation IoU)."
    lines = ["## Training", "", *markdown.table(header, rows), "", note, ""]
    return lines + [material.figure(path, "training curves")]


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value


def appendix(material: Material) -> list[str]:
    """The cache's and the evaluation's configuration, folded away: a record, not a finding."""
    config = material.cache.config
    identity = dict(config["identity"])
    identity["views"] = f"{len(identity['views'])} (image, view, split) entries"
    if identity.get("augmentation_recipe"):
        identity["augmentation_recipe"] = "albumentations recipe (recorded in the cache)"
    record = {
        "cache": {"identity": identity, "run": config.get("run")},
        "evaluation": material.metadata["identity"],
    }
    return [
        "## Appendix: configuration",
        "",
        "<details>",
        "<summary>The cache's configuration and the evaluation's identity (as recorded; "
        "paths as the commands were given them)</summary>",
        "",
        f"Cache built by: {markdown.code(config.get('command', '?'))}",
        "",
        *markdown.fence(json.dumps(record, indent=1), "json"),
        "",
        "</details>",
    ]


SECTIONS = (strategies_section, data_section, distributions_section, training_section)
