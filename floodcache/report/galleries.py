"""Galleries that teach: per model and prompt, its worst, typical and best views, each shown
with its truth and every model's prediction.

A gallery's views come from bands of the model's IoU ranking on that prompt: the lowest
quarter (worst first), the middle half (nearest the median first) and the highest quarter
(best first). Within a band a view whose image this model's galleries have not shown yet comes
first, so its galleries show different images where the split has them; no gallery shows a
view twice.

Each view is the view's preview image (longest side <= 512, from the cache) with the
full-resolution truth shrunk onto it, and the predictions the evaluation kept at that size
(`Material.prediction`), the prompt drawn on each.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import polars as pl

from floodcache.evaluate.table import prompt_from_row
from floodcache.report import markdown, overlays
from floodcache.report.material import Material

KINDS = ("worst", "typical", "best")


@dataclass(frozen=True)
class Choice:
    """A view chosen for a gallery: its kind, its IoU rank (1 = worst) among `of` views."""

    kind: str
    rank: int
    of: int
    record: dict  # the evaluation table's row of the gallery's model


def choose_views(rows: pl.DataFrame, per_kind: int, shown: set[str]) -> list[Choice]:
    """Up to `per_kind` worst, typical and best views of one model's evaluated `rows` for one
    prompt, in that order; `shown` (image ids this model's galleries show already) gains the
    chosen images."""
    ranked = rows.sort(["iou", "row"]).to_dicts()
    bands = _bands(ranked, per_kind)
    taken: dict[str, list[dict]] = {kind: [] for kind in KINDS}
    used_rows: set[int] = set()
    for kind in ("worst", "best", "typical"):  # the extremes are fewest: they pick first
        for _ in range(per_kind):
            free = [r for r in bands[kind] if r["row"] not in used_rows]
            if not free:
                break
            pick = next((r for r in free if r["image_id"] not in shown), free[0])
            taken[kind].append(pick)
            used_rows.add(pick["row"])
            shown.add(pick["image_id"])
    rank = {r["row"]: i + 1 for i, r in enumerate(ranked)}
    return [Choice(k, rank[r["row"]], len(ranked), r) for k in KINDS for r in taken[k]]


def _bands(ranked: list[dict], per_kind: int) -> dict[str, list[dict]]:
    """kind -> its candidates, best suited first: the lowest quarter of the IoU ranking, the
    highest quarter, and the middle half by distance from the median IoU."""
    if not ranked:
        return {kind: [] for kind in KINDS}
    band = max(per_kind, -(-len(ranked) // 4))  # a quarter of the views, at least per_kind
    median = float(np.median([r["iou"] for r in ranked]))
    middle = ranked[band : len(ranked) - band] or ranked
    typical = sorted(middle, key=lambda r: abs(r["iou"] - median))
    return {"worst": ranked[:band], "typical": typical, "best": ranked[::-1][:band]}


def galleries_section(material: Material) -> list[str]:
    lines = ["### Worst, typical and best views per model and prompt", ""]
    k = material.config.gallery
    lines += [
        f"Per model and prompt: that model's {k} worst, {k} typical (IoU nearest the median) "
        f"and {k} best view{'s' if k > 1 else ''} (`--gallery`), each shown with its truth "
        "and every model's prediction and IoU. A model's galleries show different images "
        "wherever the split has enough; the legend above each figure names the colours."
    ]
    for model in material.models:
        shown: set[str] = set()
        for prompt in material.prompts:
            choices = choose_views(
                material.evaluated(model.name, prompt), material.config.gallery, shown
            )
            if not choices:
                continue
            rows = [view_panels(material, c.record, _heading(c, model.name)) for c in choices]
            path = gallery_path(material, "views", model.name, prompt)
            overlays.gallery(rows, path)
            lines += ["", f"#### {markdown.code(model.name)}, {markdown.prompt_title(prompt)}", ""]
            lines.append(material.figure(path, f"views of {model.name} with {prompt}"))
    return lines


def _heading(choice: Choice, model: str) -> str:
    return f"{choice.kind}: IoU rank {choice.rank} of {choice.of} for {model}"


def gallery_path(material: Material, kind: str, model: str, prompt: str):
    name = f"{kind}_{markdown.slug(model)}_{markdown.slug(prompt)}.jpg"
    return material.config.folder / "figures" / name


def view_panels(material: Material, record: dict, heading: str) -> list:
    """(title, image) panels of one view with its prompt: the truth, then each model's
    prediction; the first title holds `heading` and every model's IoU."""
    image = material.cache.image_preview(record["row"])
    size = (image.shape[1], image.shape[0])

    def shrink(mask: np.ndarray) -> np.ndarray:  # HxW -> the preview's hxw bool
        return cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0

    truth = shrink(material.cache.full_mask(record["row"]))
    prompt, scale = prompt_from_row(record), image.shape[0] / record["height"]
    ious = material.ious(record)
    both = ", ".join(f"{name} {iou:.3f}" for name, iou in ious.items())
    title = f"{heading}\nimage {record['image_id']} · IoU {both}"
    panels = [(title, overlays.draw_prompt(overlays.truth_overlay(image, truth), prompt, scale))]
    for name, iou in ious.items():
        overlay = overlays.prediction_overlay(
            image, shrink(material.prediction(name, record)), truth
        )
        panels.append((f"{name}: IoU {iou:.3f}", overlays.draw_prompt(overlay, prompt, scale)))
    return panels
