"""An evaluation folder: the per-view metrics table (Parquet and CSV, one row per model, prompt
and view), every predicted mask at the size of the view's preview (masks.parquet, which the
report's galleries show without decoding again) and evaluation.json, which says what made
them; written whole, metadata last."""

from __future__ import annotations

import json
from collections.abc import Callable
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


class DamagedEvaluation(ValueError):
    """A file of an evaluation folder cannot be read, or is not what evaluate writes."""


METADATA_KEYS = ("identity", "models", "views", "seconds", "cache")  # what readers rely on


def load_evaluation(out: Path) -> tuple[pl.DataFrame, dict]:
    """(table, metadata) of a finished evaluation folder; DamagedEvaluation naming the file
    and the fix where one is damaged."""
    out = Path(out)
    if not (out / METADATA).is_file() or not (out / TABLE).is_file():
        raise FileNotFoundError(
            f"{out} holds no finished evaluation ({METADATA} and {TABLE}): make one with "
            f"{command('evaluate', option('cache'), 'FILE.h5', option('out'), out)}"
        )
    try:
        metadata = json.loads((out / METADATA).read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise damaged(out / METADATA, f"not valid JSON: {error}") from None
    if not isinstance(metadata, dict) or any(key not in metadata for key in METADATA_KEYS):
        raise damaged(out / METADATA, f"it needs the keys {', '.join(METADATA_KEYS)}")
    return _read_table(out / TABLE, SCHEMA, rows=True), metadata


def load_masks(out: Path) -> pl.DataFrame:
    """The predicted masks of a finished evaluation folder (MASKS_SCHEMA)."""
    return _read_table(Path(out) / MASKS, MASKS_SCHEMA, rows=False)  # all skipped: none


def _read_table(path: Path, schema: dict, rows: bool) -> pl.DataFrame:
    """A Parquet table evaluate wrote, checked to be whole, with its columns (and rows, when
    `rows`)."""
    try:
        table = pl.read_parquet(path)
    except (OSError, pl.exceptions.PolarsError) as error:
        raise damaged(path, f"it cannot be read: {str(error).splitlines()[0]}") from None
    if dict(table.schema) != schema:
        raise damaged(path, "its columns are not those evaluate writes")
    if rows and table.is_empty():
        raise damaged(path, "it holds no rows")
    return table


def damaged(path: Path, why: str) -> DamagedEvaluation:
    return DamagedEvaluation(
        f"{path} is damaged ({why}): evaluate again with --overwrite, which rebuilds it "
        f"({command('evaluate', '...', option('overwrite'))}, or "
        f"{command('report', option('cache'), '...', option('overwrite'))})"
    )


def write_evaluation(out: Path, table: pl.DataFrame, masks: pl.DataFrame, metadata: dict) -> None:
    """Write the table (Parquet, CSV), the masks and then the metadata, each whole.

    The metadata goes last and an older one is removed first, so a folder with evaluation.json
    always holds the table and masks it describes.
    """
    out.mkdir(parents=True, exist_ok=True)
    (out / METADATA).unlink(missing_ok=True)
    writers: dict[str, Callable[[Path], object]] = {
        TABLE: table.write_parquet,
        CSV: table.write_csv,
        MASKS: masks.write_parquet,
        METADATA: lambda path: Path(path).write_text(json.dumps(metadata, indent=1)),
    }
    for name, write in writers.items():
        write_whole(out / name, write)
