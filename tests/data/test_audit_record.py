"""The record of an audit a cache keeps: the report's audit text and findings from it alone."""

from __future__ import annotations

import json

from floodcache.data import audit_record


def test_the_record_says_what_the_audit_said(zoo_report):
    record = json.loads(json.dumps(audit_record.record_of(zoo_report, len(zoo_report.usable))))
    assert audit_record.summary(record) == zoo_report.summary()
    found = audit_record.image_findings(record)
    assert found["exif"] == ["exif_orientation"]
    assert "rgb_mask" not in found and record["findings"]["rgb_mask"]["mask"]


def test_the_record_says_how_many_usable_pairs_the_cache_holds(zoo_report):
    record = audit_record.record_of(zoo_report, 2)
    assert audit_record.summary(record).endswith(
        "the cache holds the first 2 usable pairs (--limit)"
    )
