"""Each view's audit findings, as recorded when its data was audited: the explorer shows and
filters them, and never audits the data folder again (it may be gone, or have changed since
the cache was made, and the findings must be those of the images that were embedded).

`view_findings` is the one place that knows where they are recorded: a per-view column of the
cache, else a column of the evaluation's table; where neither holds them the view's finding is
NOT_RECORDED.
"""

from __future__ import annotations

import json

import polars as pl

from floodcache.cache.reader import Cache

FINDINGS = "audit_findings"  # the column's name, in the cache or in the evaluation's table
NOT_RECORDED = "not recorded"
NO_FINDING = "none"  # audited, and nothing found


def view_findings(cache: Cache, table: pl.DataFrame) -> dict[int, list[str] | None]:
    """Cache row -> its view's audit finding labels ([] when audited clean), for every row of
    `table` (the evaluation's); None where neither the cache nor the table records them."""
    rows = sorted(set(table["row"].to_list()))
    if FINDINGS in cache.file:
        column = cache.file[FINDINGS]
        return {row: _labels(column[row]) for row in rows}
    if FINDINGS in table.columns:
        first = table.unique("row", keep="first").select("row", FINDINGS)
        return {row: _labels(value) for row, value in first.iter_rows()}
    return dict.fromkeys(rows)


def finding_text(labels: list[str] | None) -> str:
    """What the table shows: the labels joined, NO_FINDING, or NOT_RECORDED."""
    if labels is None:
        return NOT_RECORDED
    return ", ".join(labels) if labels else NO_FINDING


def _labels(value) -> list[str] | None:
    """A recorded value -> its labels: a JSON list of strings (text or bytes) or a list; None
    for a missing or empty value (nothing recorded; "[]" is an audit that found nothing)."""
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, str):
        value = json.loads(value) if value.strip() else None
    return None if value is None else [str(label) for label in value]
