"""The report's failure analysis: worst views, where fine-tuning helped and hurt, size effects.

Galleries show the view's preview image (longest side <= 512, from the cache) with the
full-resolution truth shrunk onto it, and the predictions the evaluation kept at that size
(`Material.prediction`).
"""

from __future__ import annotations

import cv2
import numpy as np
import polars as pl

from floodcache.evaluate.table import prompt_from_row
from floodcache.report import figures, markdown
from floodcache.report.material import Material
from floodcache.train.runs import PRETRAINED, DecoderModel

WATER_BINS = (0.1, 0.3, 0.6)  # water-fraction bin edges of the IoU-by-water table


def _panels(material: Material, record: dict, models: list[DecoderModel]) -> list:
    """(title, image) panels of one view: the image, its truth, each model's prediction."""
    image = material.cache.image_preview(record["row"])
    size = (image.shape[1], image.shape[0])

    def shrink(mask: np.ndarray) -> np.ndarray:  # HxW -> the preview's hxw bool
        return cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0

    truth = shrink(material.cache.full_mask(record["row"]))
    panels = [("image", image), ("ground truth", figures.truth_overlay(image, truth))]
    prompt, scale = prompt_from_row(record), image.shape[0] / record["height"]
    for model in models:
        prediction = shrink(material.prediction(model.name, record))
        overlay = figures.prediction_overlay(image, prediction, truth)
        panels.append((model.name, figures.draw_prompt(overlay, prompt, scale)))
    return panels


def _path(material: Material, kind: str, model: str, prompt: str):
    return (
        material.config.out
        / "figures"
        / f"{kind}_{markdown.slug(model)}_{markdown.slug(prompt)}.png"
    )


def _rows(evaluated: pl.DataFrame, model: str, prompt: str) -> pl.DataFrame:
    return evaluated.filter((pl.col("model") == model) & (pl.col("prompt") == prompt))


def failures_section(material: Material) -> list[str]:
    """Worst views per model and prompt, then `_changes` and `_size_effects`."""
    lines = ["## Failure analysis", "", "### Worst views per model and prompt", ""]
    lines += [
        "Overlays: ground truth in cyan; prediction blue where right, red where it finds water "
        "that is not there, yellow where it misses water; the prompt drawn on it (box white, "
        "water clicks green, background clicks magenta)."
    ]
    evaluated = material.table.filter(~pl.col("skipped"))
    for model in material.models:
        for prompt in material.prompts:
            worst = _rows(evaluated, model.name, prompt).sort("iou").head(material.config.gallery)
            if worst.is_empty():
                continue
            rows = [
                (f"image {r['image_id']} IoU {r['iou']:.3f}", _panels(material, r, [model]))
                for r in worst.to_dicts()
            ]
            path = figures.gallery(rows, _path(material, "worst", model.name, prompt))
            lines += ["", f"#### `{model.name}`, {markdown.prompt_title(prompt)}", ""]
            lines.append(material.figure(path, f"worst views of {model.name} with {prompt}"))
    return lines + _changes(material, evaluated) + _size_effects(material, evaluated)


def _changes(material: Material, evaluated: pl.DataFrame) -> list[str]:
    """Per run and prompt, the views whose IoU fine-tuning raised most and lowered most."""
    lines = ["", "### Where fine-tuning helped and hurt most"]
    base = evaluated.filter(pl.col("model") == PRETRAINED).select(
        "prompt", "row", pl.col("iou").alias("pretrained_iou")
    )
    for model in (m for m in material.models if m.run is not None):
        for prompt in material.prompts:
            joined = _rows(evaluated, model.name, prompt).join(base, on=["prompt", "row"])
            if not joined.is_empty():
                change = (pl.col("iou") - pl.col("pretrained_iou")).alias("change")
                lines += _change_block(material, model, prompt, joined.with_columns(change))
    return lines


def _change_block(material: Material, model: DecoderModel, prompt: str, joined) -> list[str]:
    k = material.config.changes
    helped = joined.filter(pl.col("change") > 0).sort("change", descending=True).head(k)
    hurt = joined.filter(pl.col("change") < 0).sort("change").head(k)
    chosen = [("helped", r) for r in helped.to_dicts()] + [("hurt", r) for r in hurt.to_dicts()]
    if not chosen:
        return ["", f"`{model.name}` gives every view the same IoU as `{PRETRAINED}`."]
    rows = [
        [
            kind,
            r["image_id"],
            f"{r['pretrained_iou']:.3f}",
            f"{r['iou']:.3f}",
            f"{r['change']:+.3f}",
        ]
        for kind, r in chosen
    ]
    both = [material.models[0], model]
    gallery = [
        (f"{kind}: image {r['image_id']} IoU change {r['change']:+.3f}", _panels(material, r, both))
        for kind, r in chosen
    ]
    path = figures.gallery(gallery, _path(material, "change", model.name, prompt))
    header = ["", "image", f"{PRETRAINED} IoU", f"{model.name} IoU", "change"]
    title = f"#### `{model.name}` vs `{PRETRAINED}`, {markdown.prompt_title(prompt)}"
    lines = ["", title, "", *markdown.table(header, rows), ""]
    if hurt.is_empty() or helped.is_empty():
        lines += [f"No view got {'worse' if hurt.is_empty() else 'better'} with this prompt.", ""]
    return lines + [material.figure(path, f"{model.name} vs {PRETRAINED} with {prompt}")]


def _size_effects(material: Material, evaluated: pl.DataFrame) -> list[str]:
    """IoU against water fraction and image size: two figures and a table by water fraction."""
    out = material.config.out / "figures"
    table = material.table.with_columns(
        (pl.col("height") * pl.col("width") / 1e6).alias("megapixels")
    )
    names = material.names
    water = figures.versus(
        table, "water_fraction", "water fraction", names, out / "iou_vs_water.png"
    )
    size = figures.versus(
        table, "megapixels", "image size (megapixels)", names, out / "iou_vs_size.png", log=True
    )
    edges = [0.0, *WATER_BINS, 1.0]
    bins = [f"{lo:.0%}–{hi:.0%}" for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    rows = []
    by_prompt = evaluated.sort(
        pl.col("prompt").cast(pl.Enum(material.prompts)), maintain_order=True
    )
    for (model, prompt), group in by_prompt.group_by("model", "prompt", maintain_order=True):
        cells = []
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            part = group.filter(
                (pl.col("water_fraction") >= lo)
                & ((pl.col("water_fraction") < hi) | (hi == edges[-1]))
            )
            cells.append(f"{part['iou'].mean():.3f} ({part.height})" if part.height else "–")
        rows.append([model, markdown.prompt_title(prompt), *cells])
    lines = ["", "### IoU against water fraction and image size", ""]
    lines += ["Mean IoU (views) by the view's water fraction:", ""]
    lines += markdown.table(["model", "prompt", *bins], rows)
    lines += ["", material.figure(water, "IoU vs water fraction")]
    return lines + ["", material.figure(size, "IoU vs image size")]
