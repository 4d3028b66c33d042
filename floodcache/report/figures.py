"""The report's charts (Agg backend: no display needed), each saved as one PNG on an opaque
white background, so that a dark markdown viewer shows black text on white, not on black.

Every function takes plain data (Polars frames with the evaluation table's columns) and a
path, draws one figure, saves it and closes it. Means carry their 95% bootstrap interval
(`statistics`); counts have integer axes. The pictures of views are in `overlays`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: figures are files, there is no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from matplotlib.ticker import MaxNLocator, NullFormatter, ScalarFormatter  # noqa: E402
from matplotlib.transforms import offset_copy  # noqa: E402

from floodcache.evaluate.metrics import METRIC_NAMES  # noqa: E402
from floodcache.report.statistics import bootstrap  # noqa: E402
from floodcache.utils import outputs  # noqa: E402
from floodcache.utils.atomic import write_whole  # noqa: E402

DPI = 110
BACKGROUND = "white"


def _colors(models: list[str]) -> dict[str, str]:
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {model: cycle[i % len(cycle)] for i, model in enumerate(models)}


def _grid(count: int, columns: int, size: tuple[float, float]):
    """A figure with `count` subplots in rows of `columns`; unused axes hidden."""
    columns = max(1, min(columns, count))
    rows = -(-count // columns)
    fig, axes = plt.subplots(
        rows,
        columns,
        figsize=(size[0] * columns, size[1] * rows),
        squeeze=False,
        facecolor=BACKGROUND,
    )
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:count])


def save(fig: plt.Figure, path: Path, **options: Any) -> Path:
    """`fig` saved at `path` in the format its suffix names, whole or not at all
    (`write_whole`: a full disk leaves no truncated image), then closed. `options` go to
    `savefig`. Its name is recorded first (`record_written`)."""
    kind = Path(path).suffix.lstrip(".")
    try:
        record_written(Path(path))
        write_whole(path, lambda tmp: fig.savefig(tmp, format=kind, **options))
    finally:
        plt.close(fig)
    return path


def record_written(figure: Path) -> None:
    """Add `figure`'s name to its report folder's list of the figures the report wrote
    (`outputs.FIGURES_WRITTEN`), before it is written: a report stopped part way still knows
    the figures it left, and a later report replaces those and no file of the user's."""
    folder = figure.parent.parent
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / outputs.FIGURES_WRITTEN, "a", encoding="utf-8") as written:
        written.write(figure.name + "\n")


def _save(fig, path: Path) -> Path:
    return save(fig, path, dpi=DPI, bbox_inches="tight", facecolor=BACKGROUND, transparent=False)


def prompt_label(prompt: str, oracle: bool) -> str:
    """`box*` for an oracle prompt (it reads the ground truth), `none` otherwise."""
    return f"{prompt}*" if oracle else prompt


def mean_bars(means: pl.DataFrame, models: list[str], path: Path) -> Path:
    """Grouped bars of mean IoU and Dice per prompt, one bar per model, with 95% intervals.

    means: one row per (model, prompt, metric) with prompt, oracle, model, metric, mean, low,
    high; metric "iou" and "dice".
    """
    prompts = means.unique("prompt", maintain_order=True)
    labels = [prompt_label(p, o) for p, o in zip(prompts["prompt"], prompts["oracle"], strict=True)]
    fig, axes = _grid(2, 2, (max(5.0, 1.1 * len(labels) * max(1, len(models)) ** 0.5), 3.8))
    width = 0.8 / len(models)
    colors = _colors(models)
    for ax, metric in zip(axes, ("iou", "dice"), strict=True):
        for k, model in enumerate(models):
            rows = prompts.select("prompt").join(
                means.filter((pl.col("model") == model) & (pl.col("metric") == metric)),
                on="prompt",
                how="left",
            )
            # a mean without an interval (too few views) gets no bar: its ends are the mean
            rows = rows.with_columns(pl.col("mean").fill_null(0))
            rows = rows.with_columns(pl.col("low", "high").fill_null(pl.col("mean")))
            mean, low, high = (rows[c].to_numpy() for c in ("mean", "low", "high"))
            x = np.arange(len(labels)) + (k - (len(models) - 1) / 2) * width
            error = np.stack([mean - low, high - mean])
            ax.bar(x, mean, width, yerr=error, label=model, color=colors[model], capsize=2)
        ax.set_xticks(np.arange(len(labels)), labels)
        ax.set_ylim(0, 1)
        ax.set_title(f"mean {'IoU' if metric == 'iou' else 'Dice'} (error bars: 95% interval)")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("by prompt strategy (* = oracle prompt, reads the ground truth)", fontsize=9)
    return _save(fig, path)


def _per_prompt(table: pl.DataFrame, models: list[str], size, xlabel: str, ylabel: str):
    """A figure with one titled, labelled panel per prompt of `table`.

    Returns (fig, [(ax, {model: that model's evaluated rows for the panel's prompt})]).
    """
    prompts = table.unique("prompt", maintain_order=True)
    fig, axes = _grid(len(prompts), 3, size)
    panels = []
    for ax, prompt, oracle in zip(axes, prompts["prompt"], prompts["oracle"], strict=True):
        ax.set_title(prompt_label(prompt, oracle), fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        evaluated = table.filter((pl.col("prompt") == prompt) & ~pl.col("skipped"))
        panels.append((ax, {m: evaluated.filter(pl.col("model") == m) for m in models}))
    return fig, panels


def _finish(fig, panels, title: str, path: Path) -> Path:
    panels[0][0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def metric_histograms(table: pl.DataFrame, metric: str, models: list[str], path: Path) -> Path:
    """One panel per prompt: the per-view distribution of `metric` (0..1), the models' bars
    side by side in each bin, so that neither hides the other."""
    fig, panels = _per_prompt(table, models, (4.0, 2.8), METRIC_NAMES[metric], "views")
    bins = np.linspace(0, 1, 11)
    colors = _colors(models)
    for ax, rows in panels:
        values = [rows[model][metric].to_numpy() for model in models]
        ax.hist(values, bins, label=models, color=[colors[m] for m in models])
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    return _finish(fig, panels, f"per-view {METRIC_NAMES[metric]} (* = oracle prompt)", path)


def training_curves(histories: dict[str, pl.DataFrame], path: Path) -> Path:
    """Loss and IoU per epoch for each run (train dashed, validation solid; best epoch dotted)."""
    fig, axes = _grid(2, 2, (5.0, 3.5))
    colors = _colors(list(histories))
    for name, history in histories.items():
        epochs = history["epoch"].to_numpy()
        best = int(epochs[np.argmax(history["val_iou"].to_numpy())])
        for ax, metric in zip(axes, ("loss", "iou"), strict=True):
            for split, style in (("train", "--"), ("val", "-")):
                values = history[f"{split}_{metric}"].to_numpy()
                ax.plot(
                    epochs, values, style, marker=".", color=colors[name], label=f"{name} {split}"
                )
            ax.axvline(best, color=colors[name], linestyle=":", alpha=0.6)
    for ax, title in zip(axes, ("loss (BCE + Dice, + IoU-head MSE)", "IoU"), strict=True):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


@dataclass(frozen=True)
class Scale:
    """The x axis of `versus`: a column of the table, the column holding each row's bin, the
    boundaries between bins in the column's unit (drawn as faint lines), the axis label, and
    whether it is logarithmic (else from 0 to 100, percent)."""

    x: str
    bin_column: str
    boundaries: tuple[float, ...]
    label: str
    log: bool = False


def versus(table: pl.DataFrame, scale: Scale, models: list[str], path: Path) -> Path:
    """One panel per prompt: IoU against column `scale.x` per view (dots), and per bin the
    mean IoU of its views with its 95% interval; the report's tables use the same bins."""
    x, label, log = scale.x, scale.label, scale.log
    fig, panels = _per_prompt(table, models, (4.0, 3.0), label, "IoU")
    colors = _colors(models)
    column, boundaries = scale.bin_column, scale.boundaries
    for ax, rows in panels:
        for k, (model, values) in enumerate(rows.items()):
            ax.scatter(values[x], values["iou"], s=10, alpha=0.4, color=colors[model], label=model)
            # each model's diamonds a few points apart, so that neither hides the other
            shifted = offset_copy(
                ax.transData, fig, x=5 * (k - (len(rows) - 1) / 2), units="points"
            )
            _binned_means(ax, values, x, column, colors[model], shifted)
        for boundary in boundaries:
            ax.axvline(boundary, color="grey", linewidth=0.8, alpha=0.4)
        if log:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ScalarFormatter())  # 1 and 10, not 10^0 and 10^1
            # the minor ticks unlabelled: "2x10^-1 3x10^-1..." ran into each other
            ax.xaxis.set_minor_formatter(NullFormatter())
        else:
            ax.set_xlim(0, 100)
        ax.set_ylim(-0.02, 1.02)
    title = f"IoU vs {label} (diamonds: mean IoU of a bin's views, error bars: 95% interval)"
    return _finish(fig, panels, title, path)


def _binned_means(ax, values: pl.DataFrame, x: str, column: str, color, transform) -> None:
    """Per bin: a diamond at (the bin's median x, its mean IoU) with the interval's bar."""
    for _, group in values.group_by(column, maintain_order=True):
        interval = bootstrap(group["iou"].to_numpy())
        assert interval is not None, "a group of group_by holds one view at least"
        center = float(np.median(group[x].to_numpy()))
        # no error bar where the report shows no interval (too few views)
        shown = interval.shown
        error = [
            [interval.mean - interval.low if shown else 0.0],
            [interval.high - interval.mean if shown else 0.0],
        ]
        ax.errorbar(
            center,
            interval.mean,
            yerr=error,
            color=color,
            marker="D",
            markersize=5,
            capsize=3,
            transform=transform,
        )
