"""The report's matplotlib figures (Agg backend: no display needed), each saved as one PNG.

Every function takes plain data (Polars frames with the evaluation table's columns, numpy
images) and a path, draws one figure, saves it and closes it. Kept apart from report.py, which
decides what to show and writes the markdown.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: figures are files, there is no display

import cv2  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from floodcache.utils.atomic import write_whole  # noqa: E402

DPI = 110
GALLERY_DPI = 80  # galleries are large grids of photos: smaller files, faster to write
# Prediction overlay colours: right water, false alarm, missed water (RGB 0..255).
TRUE_POSITIVE, FALSE_POSITIVE, FALSE_NEGATIVE = (40, 110, 255), (255, 40, 40), (255, 200, 0)
TRUTH = (0, 200, 255)


def _colors(models: list[str]) -> dict[str, str]:
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {model: cycle[i % len(cycle)] for i, model in enumerate(models)}


def _grid(count: int, columns: int, size: tuple[float, float]):
    """A figure with `count` subplots in rows of `columns`; unused axes hidden."""
    columns = max(1, min(columns, count))
    rows = -(-count // columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(size[0] * columns, size[1] * rows), squeeze=False
    )
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:count])


def _save(fig, path: Path, dpi: int = DPI) -> Path:
    """`fig` as a PNG at `path`, whole or not at all (`write_whole`: a full disk leaves no
    truncated image), then closed."""
    try:
        write_whole(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight"))
    finally:
        plt.close(fig)
    return path


def prompt_label(prompt: str, oracle: bool) -> str:
    """`box*` for an oracle prompt (it reads the ground truth), `none` otherwise."""
    return f"{prompt}*" if oracle else prompt


def mean_bars(summary: pl.DataFrame, models: list[str], path: Path) -> Path:
    """Grouped bars of mean IoU and Dice (± std) per prompt, one bar per model.

    summary: one row per (model, prompt) with prompt, oracle, iou_mean, iou_std, dice_mean...
    """
    prompts = summary.unique("prompt", maintain_order=True)
    labels = [prompt_label(p, o) for p, o in zip(prompts["prompt"], prompts["oracle"], strict=True)]
    fig, axes = _grid(2, 2, (max(5.0, 1.1 * len(labels) * max(1, len(models)) ** 0.5), 3.8))
    width = 0.8 / len(models)
    colors = _colors(models)
    for ax, metric in zip(axes, ("iou", "dice"), strict=True):
        for k, model in enumerate(models):
            rows = prompts.select("prompt").join(
                summary.filter(pl.col("model") == model), on="prompt", how="left"
            )
            x = np.arange(len(labels)) + (k - (len(models) - 1) / 2) * width
            ax.bar(
                x,
                rows[f"{metric}_mean"].fill_null(0).to_numpy(),
                width,
                yerr=rows[f"{metric}_std"].fill_null(0).to_numpy(),
                label=model,
                color=colors[model],
                capsize=2,
            )
        ax.set_xticks(np.arange(len(labels)), labels)
        ax.set_ylim(0, 1)
        ax.set_title(f"mean {'IoU' if metric == 'iou' else 'Dice'} (± std)")
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
    """One panel per prompt: the per-view distribution of `metric` for each model (0..1)."""
    fig, panels = _per_prompt(table, models, (4.0, 2.8), metric, "views")
    bins = np.linspace(0, 1, 21)
    colors = _colors(models)
    for ax, rows in panels:
        for model, values in rows.items():
            values = values[metric].to_numpy()
            ax.hist(values, bins, histtype="step", linewidth=1.8, label=model, color=colors[model])
    return _finish(fig, panels, f"per-view {metric} (* = oracle prompt)", path)


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
    for ax, title in zip(axes, ("loss (BCE + Dice + IoU head)", "IoU"), strict=True):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def versus(table: pl.DataFrame, column: str, label: str, models: list[str], path: Path, log=False):
    """One panel per prompt: IoU against `column` per view, dots per model plus binned means."""
    fig, panels = _per_prompt(table, models, (4.0, 3.0), label, "IoU")
    colors = _colors(models)
    for ax, rows in panels:
        for model, values in rows.items():
            x, y = values[column].to_numpy(), values["iou"].to_numpy()
            ax.scatter(x, y, s=10, alpha=0.5, color=colors[model], label=model)
            centers, means = _binned_means(x, y)
            ax.plot(centers, means, color=colors[model], linewidth=2, marker="D", markersize=5)
        if log:
            ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
    return _finish(fig, panels, f"IoU vs {label} (diamonds: mean IoU per bin of views)", path)


def _binned_means(x: np.ndarray, y: np.ndarray, most: int = 6):
    """Mean of y in equal-count bins of x (up to `most`, about 5 views or more each):
    (bin median x, mean y), one point per bin."""
    if len(x) == 0:
        return x, y
    if len(np.unique(x)) == 1:  # a single x value: a single bin
        return x[:1], np.array([y.mean()])
    bins = max(1, min(most, len(x) // 5))
    edges = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)))
    index = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)
    used = [b for b in range(len(edges) - 1) if (index == b).any()]
    centers = [np.median(x[index == b]) for b in used]
    return np.array(centers), np.array([y[index == b].mean() for b in used])


def truth_overlay(image: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """hxwx3 uint8 image with the true water (hxw bool) tinted."""
    return _tint(image, [(truth, TRUTH)])


def prediction_overlay(image: np.ndarray, prediction: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """hxwx3 uint8 image tinted: right water blue, false alarm red, missed water yellow."""
    return _tint(
        image,
        [
            (prediction & truth, TRUE_POSITIVE),
            (prediction & ~truth, FALSE_POSITIVE),
            (~prediction & truth, FALSE_NEGATIVE),
        ],
    )


def draw_prompt(image: np.ndarray, prompt, scale: float) -> np.ndarray:
    """A copy of hxwx3 `image` with a Prompt drawn on it: box white, water clicks green,
    background clicks magenta. `scale`: image pixels per original-image pixel."""
    out = np.ascontiguousarray(image).copy()
    thickness = max(1, round(max(out.shape) / 250))
    if prompt.box is not None:
        x0, y0, x1, y1 = (int(round(v * scale)) for v in prompt.box)
        cv2.rectangle(out, (x0, y0), (x1, y1), (255, 255, 255), thickness)
    points = [] if prompt.points is None else zip(prompt.points, prompt.labels, strict=True)
    for (x, y), label in points:
        color = (0, 230, 0) if label == 1 else (255, 0, 255)
        center = (int(round(x * scale)), int(round(y * scale)))
        cv2.circle(out, center, 3 * thickness, color, -1)
        cv2.circle(out, center, 3 * thickness, (255, 255, 255), 1)
    return out


def _tint(image: np.ndarray, layers, alpha: float = 0.5) -> np.ndarray:
    out = image.astype(np.float32)
    for mask, color in layers:
        out[mask] = (1 - alpha) * out[mask] + alpha * np.array(color, np.float32)
    return out.astype(np.uint8)


GALLERY_PANEL = (3.2, 2.6)  # inches of a gallery panel, its title included
GALLERY_TITLE = 0.4  # inches above each row of images for its titles (two lines of 8 pt)


def gallery(rows: list[tuple[str, list[tuple[str, np.ndarray]]]], path: Path) -> Path:
    """A grid of images: one row per view (row title, then (panel title, hxwx3 image) panels).

    Laid out by fixed spacing, not tight_layout (savefig trims the margins), with no ticks,
    and each image shrunk to the pixels it is shown at: tight_layout and placing titles over
    hidden ticks cost more than drawing the photos."""
    columns = max(len(panels) for _, panels in rows)
    width, height = GALLERY_PANEL
    fig, axes = plt.subplots(
        len(rows),
        columns,
        figsize=(width * columns, height * len(rows)),
        squeeze=False,
        subplot_kw={"xticks": [], "yticks": []},  # else placing a title places hidden ticks
    )
    image_height = height - GALLERY_TITLE
    fig.subplots_adjust(
        left=0,
        right=1,
        bottom=0,
        top=1 - GALLERY_TITLE / (height * len(rows)),
        wspace=0.05,
        hspace=GALLERY_TITLE / image_height,
    )
    shown = (round(width / 1.05 * GALLERY_DPI), round(image_height * GALLERY_DPI))
    for r, (title, panels) in enumerate(rows):
        for c, ax in enumerate(axes[r]):
            ax.axis("off")
            if c < len(panels):
                ax.imshow(_fit(panels[c][1], shown))
                ax.set_title(f"{title}\n{panels[c][0]}" if c == 0 else panels[c][0], fontsize=8)
    return _save(fig, path, GALLERY_DPI)


def _fit(image: np.ndarray, box: tuple[int, int]) -> np.ndarray:
    """hxwx3 `image` area-shrunk to fit within box (width, height) pixels, if larger."""
    scale = min(box[0] / image.shape[1], box[1] / image.shape[0])
    if scale >= 1:
        return image
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)
