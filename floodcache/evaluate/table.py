"""An evaluation folder: the per-view metrics table (Parquet and CSV, one row per model, prompt
and view), every predicted mask at the size of the view's preview (masks.parquet, which the
report's galleries show without decoding again) and evaluation.json, which says what made
them; written whole, metadata last."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from floodcache.evaluate.metrics import METRICS
from floodcache.prompts import Prompt
from floodcache.utils.atomic import write_whole
from floodcache.utils.program import command, option

TABLE, CSV, METADATA = "metrics.parquet", "metrics.csv", "evaluation.json"
MASKS = "masks.parquet"
MASKS_SCHEMA = {  # one row per (model, prompt, view) evaluated and not skipped
    "model": pl.String,
    "prompt": pl.String,
    "row": pl.Int64,
    "mask_png": pl.Binary,  # {0, 1} uint8 PNG at the size of the cache's preview of the view
}

SCHEMA = {
    "model": pl.String,
    "prompt": pl.String,
    "oracle": pl.Boolean,
    "multimask": pl.Boolean,
    "skipped": pl.Boolean,
    "image_id": pl.String,
    "view": pl.Int32,
    "split": pl.String,
    "row": pl.Int64,
    "image_file": pl.String,
    "height": pl.Int32,
    "width": pl.Int32,
    **{name: pl.Float64 for name in METRICS},
    "water_fraction": pl.Float64,
    "predicted_fraction": pl.Float64,
    "predicted_iou": pl.Float64,
    "points": pl.String,  # JSON [[x, y], ...] original-image pixels, or null
    "labels": pl.String,  # JSON [1, 0, ...] (1 = water), or null
    "box": pl.String,  # JSON [x0, y0, x1, y1] original-image pixels, or null
}


def prompt_from_row(row: dict) -> Prompt:
    """The recorded prompt of a table row (original-image pixels)."""
    parts = {k: None if row[k] is None else json.loads(row[k]) for k in ("points", "labels", "box")}
    return Prompt(**parts)


def load_evaluation(out: Path) -> tuple[pl.DataFrame, dict]:
    """(table, metadata) of a finished evaluation folder."""
    out = Path(out)
    if not (out / METADATA).is_file() or not (out / TABLE).is_file():
        raise FileNotFoundError(
            f"{out} holds no finished evaluation ({METADATA} and {TABLE}): make one with "
            f"{command('evaluate', option('cache'), 'FILE.h5', option('out'), out)}"
        )
    return pl.read_parquet(out / TABLE), json.loads((out / METADATA).read_text())


def load_masks(out: Path) -> pl.DataFrame:
    """The predicted masks of a finished evaluation folder (MASKS_SCHEMA)."""
    return pl.read_parquet(Path(out) / MASKS)


def write_evaluation(out: Path, table: pl.DataFrame, masks: pl.DataFrame, metadata: dict) -> None:
    """Write the table (Parquet, CSV), the masks and then the metadata, each whole.

    The metadata goes last and an older one is removed first, so a folder with evaluation.json
    always holds the table and masks it describes.
    """
    out.mkdir(parents=True, exist_ok=True)
    (out / METADATA).unlink(missing_ok=True)
    writers = {
        TABLE: table.write_parquet,
        CSV: table.write_csv,
        MASKS: masks.write_parquet,
        METADATA: lambda path: Path(path).write_text(json.dumps(metadata, indent=1)),
    }
    for name, write in writers.items():
        write_whole(out / name, write)
