"""The report's failure analysis: galleries (`galleries`), where fine-tuning helped and hurt,
and failure by cause: IoU by water fraction, by image size and by the audit's findings, and
the views every prompt fails.

Every cause table has one row per model and prompt and one column per group of views: the
mean IoU of the group's views with its 95% bootstrap interval and their count.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from floodcache.data import audit_record
from floodcache.report import figures, galleries, markdown, overlays, statistics
from floodcache.report.material import Material
from floodcache.train.runs import PRETRAINED, DecoderModel

# Water, in percent of the view's pixels, throughout: bin edges of tables and figure alike.
WATER_EDGES = (0.0, 10.0, 30.0, 60.0, 100.0)
SIZE_EDGES = (0.0, 0.25, 1.0, 3.0)  # megapixels: phone photos to aerial mosaics
# The audit's findings on usable pairs that change how an image is read, in table order.
FINDINGS = {
    "exif_orientation": "EXIF-rotated",
    "converted_mode": "converted",
    "duplicate_image": "duplicate image",
    "format_mismatch": "extension ≠ format",
}
NO_FINDING = "no finding"
FAIL_IOU = 0.5  # below it, the pixels a mask gets wrong outnumber the water it finds
LISTED = 15  # views listed in the every-prompt-fails table


def failures_section(material: Material) -> list[str]:
    """Galleries, where fine-tuning helped and hurt, then failure by cause."""
    lines = ["## Failure analysis", "", *galleries.galleries_section(material)]
    table = _labelled(material)
    return (
        lines + _changes(material) + _causes(material, table) + every_prompt_fails(material, table)
    )


def _changes(material: Material) -> list[str]:
    """Per run and prompt, the views whose IoU fine-tuning raised most and lowered most."""
    lines = ["", "### Where fine-tuning helped and hurt most"]
    for model in material.runs:
        for prompt in material.prompts:
            mine = material.evaluated(model.name, prompt)
            base = material.evaluated(PRETRAINED, prompt).select(
                "row", pl.col("iou").alias("pretrained_iou")
            )
            joined = mine.join(base, on="row")
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
        return ["", f"{markdown.code(model.name)} gives every view the same IoU as `{PRETRAINED}`."]
    rows = [
        [
            kind,
            markdown.text(r["image_id"]),
            f"{r['pretrained_iou']:.3f}",
            f"{r['iou']:.3f}",
            f"{r['change']:+.3f}",
        ]
        for kind, r in chosen
    ]
    gallery = [
        galleries.view_panels(material, r, f"{kind}: IoU change {r['change']:+.3f}")
        for kind, r in chosen
    ]
    path = overlays.gallery(gallery, galleries.gallery_path(material, "change", model.name, prompt))
    header = ["", "image", f"{PRETRAINED} IoU", f"{markdown.text(model.name)} IoU", "change"]
    title = f"#### {markdown.code(model.name)} vs `{PRETRAINED}`, {markdown.prompt_title(prompt)}"
    lines = ["", title, "", *markdown.table(header, rows), ""]
    if hurt.is_empty() or helped.is_empty():
        lines += [f"No view got {'worse' if hurt.is_empty() else 'better'} with this prompt.", ""]
    return lines + [material.figure(path, f"{model.name} vs {PRETRAINED} with {prompt}")]


def _labelled(material: Material) -> pl.DataFrame:
    """The evaluated rows with their water (percent), megapixels, and bins of both."""
    table = material.table.filter(~pl.col("skipped")).with_columns(
        (100 * pl.col("water_fraction")).alias("water_percent"),
        (pl.col("height") * pl.col("width") / 1e6).alias("megapixels"),
    )
    return table.with_columns(
        bin_labels(table[b.column], b.edges, b.unit, b.open_top).alias(b.bin_column)
        for b in BINNINGS
    )


def bin_labels(values: pl.Series, edges: tuple[float, ...], unit: str, open_top: bool):
    """Each value's bin (a String Series): `0 unit` for 0, else `lo–hi unit` for
    lo <= value < hi, the last bin closed; with `open_top`, `>= last unit` above the edges."""
    labels = []
    for value in values:
        label = f">= {edges[-1]:g}{unit}" if open_top else f"{edges[-2]:g}–{edges[-1]:g}{unit}"
        if value == 0:
            label = f"0{unit}"
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            if 0 < value < hi:
                label = f"{lo:g}–{hi:g}{unit}"
                break
        labels.append(label)
    return pl.Series(labels, dtype=pl.String)


def bin_order(edges: tuple[float, ...], unit: str, open_top: bool) -> list[str]:
    """Every label `bin_labels` can give, in ascending order."""
    pairs = zip(edges[:-1], edges[1:], strict=True)
    order = [f"0{unit}"] + [f"{lo:g}–{hi:g}{unit}" for lo, hi in pairs]
    return order + ([f">= {edges[-1]:g}{unit}"] if open_top else [])


def cause_table(material: Material, table: pl.DataFrame, column: str, order: list[str]):
    """Markdown lines: per model and prompt, `mean [low, high] (n)` of each group's IoU;
    `column` holds each row's group, or a list of groups (a view can be in several)."""
    present = set(table[column].explode()) if table[column].dtype == pl.List else set(table[column])
    groups = [g for g in order if g in present]
    rows = []
    for prompt in material.prompts:
        for model in material.names:
            mine = table.filter((pl.col("model") == model) & (pl.col("prompt") == prompt))
            rows.append(
                [markdown.code(model), markdown.prompt_title(prompt)]
                + [_group_cell(mine, column, group) for group in groups]
            )
    return markdown.table(["model", "prompt", *groups], rows)


def _group_cell(rows: pl.DataFrame, column: str, group: str) -> str:
    if rows[column].dtype == pl.List:
        part = rows.filter(pl.col(column).list.contains(group))
    else:
        part = rows.filter(pl.col(column) == group)
    interval = statistics.bootstrap(part["iou"].to_numpy())
    return "–" if interval is None else f"{interval.text()} ({interval.n})"


@dataclass(frozen=True)
class Binning:
    """One cause measured on a scale: the views grouped by bins of a column."""

    title: str
    figure: str  # the figure's file name
    column: str  # the value binned, a column of `_labelled`
    edges: tuple[float, ...]
    unit: str
    open_top: bool  # values above the last edge have a bin of their own
    label: str  # the figure's axis
    log: bool = False

    @property
    def bin_column(self) -> str:
        return f"{self.column}_bin"

    @property
    def boundaries(self) -> tuple[float, ...]:
        """The edges between two bins."""
        return self.edges[1:] if self.open_top else self.edges[1:-1]


BINNINGS = (
    Binning(
        title="By water fraction",
        figure="iou_vs_water",
        column="water_percent",
        edges=WATER_EDGES,
        unit="%",
        open_top=False,
        label="water (% of the view)",
    ),
    Binning(
        title="By image size",
        figure="iou_vs_size",
        column="megapixels",
        edges=SIZE_EDGES,
        unit=" MP",
        open_top=True,
        label="image size (megapixels)",
        log=True,
    ),
)


def _causes(material: Material, table: pl.DataFrame) -> list[str]:
    lines = ["", "### Failure by cause", ""]
    lines.append(
        "Mean IoU [95% interval] (views) of each group of views. Water in percent of the "
        "view's pixels; views without water (0%) are evaluated with prompt-free strategies "
        "only, since an oracle prompt needs water."
    )
    for binning in BINNINGS:
        path = material.config.folder / "figures" / f"{binning.figure}.png"
        scale = figures.Scale(
            binning.column, binning.bin_column, binning.boundaries, binning.label, binning.log
        )
        figures.versus(table, scale, material.names, path)
        order = bin_order(binning.edges, binning.unit, binning.open_top)
        lines += ["", f"#### {binning.title}", ""]
        lines += cause_table(material, table, binning.bin_column, order)
        lines += ["", material.figure(path, f"IoU vs {binning.label}")]
    return lines + ["", "#### By the audit's findings", "", *_findings(material, table)]


def findings_of(material: Material) -> dict[str, list[str]]:
    """image_id -> the FINDINGS labels the audit gave its image (not its mask), in order."""
    if material.audit is None:  # a cache from before the audit was recorded in it
        return {}
    found = audit_record.image_findings(material.audit)
    return {
        image_id: [label for code, label in FINDINGS.items() if code in codes]
        for image_id, codes in found.items()
        if any(code in FINDINGS for code in codes)
    }


def _findings(material: Material, table: pl.DataFrame) -> list[str]:
    if material.audit is None:
        return ["The cache records no audit of its data: no findings to group the views by."]
    found = findings_of(material)
    groups = [found.get(image_id) or [NO_FINDING] for image_id in table["image_id"]]
    table = table.with_columns(finding=pl.Series(groups, dtype=pl.List(pl.String)))
    lines = [
        "A view is in every group its image's audit findings name: "
        + ", ".join(f"{label} (`{code}`)" for code, label in FINDINGS.items())
        + "; the views with none of them form the first group.",
        "",
    ]
    return lines + cause_table(material, table, "finding", [NO_FINDING, *FINDINGS.values()])


def every_prompt_fails(material: Material, table: pl.DataFrame) -> list[str]:
    """The views on which every model fails with every prompt (IoU < FAIL_IOU)."""
    per_view = table.group_by("row", "image_id", "view").agg(
        pl.col("iou").max().alias("best_iou"),
        pl.col("water_percent").first(),
        pl.col("megapixels").first(),
    )
    failed = per_view.filter(pl.col("best_iou") < FAIL_IOU).sort("best_iou", "row")
    lines = ["", f"### Views every prompt fails (every model's IoU < {FAIL_IOU})", ""]
    if failed.is_empty():
        return lines + [f"None: every view has a prompt and a model with IoU >= {FAIL_IOU}."]
    found = findings_of(material) if material.audit is not None else {}
    rows = [
        [
            markdown.text(r["image_id"]),
            r["view"],
            f"{r['water_percent']:.1f}",
            f"{r['megapixels']:.2f}",
            ", ".join(found.get(r["image_id"], [])) or "–",
            f"{r['best_iou']:.3f}",
        ]
        for r in failed.head(LISTED).to_dicts()
    ]
    header = ["image", "view", "water %", "megapixels", "audit findings", "best IoU"]
    lines.append(
        f"{failed.height} of {per_view.height} views; the {min(LISTED, failed.height)} "
        "with the lowest best IoU:"
    )
    return lines + ["", *markdown.table(header, rows)]
