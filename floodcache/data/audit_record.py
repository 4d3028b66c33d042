"""What a cache records of the audit of the data it was embedded from: counts, the excluded
pairs and each pair's problem codes, as JSON in the cache's config (under its checksum). The
report reads this record, never the data folder again: a folder named by a relative path, or
changed since, would describe other data than the cache holds."""

from __future__ import annotations

from collections import Counter

from floodcache.data import audit as audit_module
from floodcache.data.audit import BLOCKING, AuditReport
from floodcache.data.decode import path_str
from floodcache.data.findings import ranked_counts
from floodcache.data.pairs import PROBLEMS


def record_of(report: AuditReport, cached: int) -> dict:
    """The JSON record of `report`; `cached`: how many of its usable pairs the cache holds
    (fewer under --limit). findings: image_id -> {"image": codes, "mask": codes}, the codes
    of the problems of its image and of its mask, in PROBLEMS order."""
    ids = {path_str(pair.image_path): pair.image_id for pair in report.pairs if pair.image_path}
    found: dict[str, dict[str, set[str]]] = {}
    for problem in report.problems:
        image_id = ids.get(problem.image)
        if image_id is not None:
            side = "mask" if problem.detail.startswith("mask:") else "image"
            found.setdefault(image_id, {"image": set(), "mask": set()})[side].add(problem.problem)
    return {
        "pairs": len(report.pairs),
        "usable": len(report.usable),
        "cached": cached,
        "on_mismatch": report.on_mismatch,
        "excluded": {path_str(key): codes for key, codes in report.excluded.items()},
        "problem_rows": dict(Counter(problem.problem for problem in report.problems)),
        "findings": {
            image_id: {side: _ordered(codes) for side, codes in sides.items()}
            for image_id, sides in found.items()
        },
    }


def summary(record: dict) -> str:
    """The audit's terminal text (`AuditReport.summary`) from its record, with how many of the
    usable pairs the cache holds where that is fewer."""
    pairs_with = Counter(
        code
        for sides in record["findings"].values()
        for code in set(sides["image"] + sides["mask"])
    )
    found = ranked_counts(record["problem_rows"], pairs_with, record["pairs"], BLOCKING)
    text = audit_module.summary(
        record["pairs"], record["usable"], record["excluded"], found, record["on_mismatch"]
    )
    if record["cached"] < record["usable"]:
        text += f"\nthe cache holds the first {record['cached']} usable pairs (--limit)"
    return text


def image_findings(record: dict) -> dict[str, list[str]]:
    """image_id -> the problem codes the audit gave its image (not its mask)."""
    return {
        image_id: sides["image"] for image_id, sides in record["findings"].items() if sides["image"]
    }


def _ordered(codes: set[str]) -> list[str]:
    return [code for code in PROBLEMS if code in codes] + sorted(codes - set(PROBLEMS))
