"""Each view's audit findings, read where they are recorded and never made up."""

from __future__ import annotations

import json
from types import SimpleNamespace

import polars as pl

from floodcache.explore.findings import FINDINGS, finding_text, view_findings

TABLE = pl.DataFrame({"row": [3, 3, 7, 9], "model": ["a", "b", "a", "a"]})


def test_findings_recorded_by_the_cache_are_read_per_view():
    recorded = [b""] * 10
    recorded[3] = json.dumps(["EXIF rotated", "16-bit"]).encode()
    recorded[7] = b"[]"
    cache = SimpleNamespace(file={FINDINGS: recorded})
    findings = view_findings(cache, TABLE)
    assert findings == {3: ["EXIF rotated", "16-bit"], 7: [], 9: None}
    assert finding_text(findings[3]) == "EXIF rotated, 16-bit"
    assert finding_text(findings[7]) == "none"


def test_findings_in_the_evaluations_table_are_read_when_the_cache_has_none():
    table = TABLE.with_columns(
        pl.Series(FINDINGS, ['["palette mask"]', '["palette mask"]', "[]", None])
    )
    findings = view_findings(SimpleNamespace(file={}), table)
    assert findings == {3: ["palette mask"], 7: [], 9: None}
    assert finding_text(findings[9]) == "not recorded"


def test_nothing_recorded_is_said_not_recorded_for_every_view():
    findings = view_findings(SimpleNamespace(file={}), TABLE)
    assert {finding_text(labels) for labels in findings.values()} == {"not recorded"}
    assert set(findings) == {3, 7, 9}
