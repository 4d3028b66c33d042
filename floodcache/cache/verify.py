"""`verify`: a cache's structure, per-view checksums, finite values and fingerprint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from floodcache.cache.format import FIELDS, fingerprint, view_digest
from floodcache.cache.reader import Cache


@dataclass
class VerifyReport:
    """What `verify` found: an empty `problems` list means the cache is sound."""

    path: Path
    problems: list[str]
    counts: dict[str, tuple[int, int]]
    fingerprint: str

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        lines = [f"cache {self.path}: {'OK' if self.ok else 'DAMAGED'}"]
        lines += [
            f"  {split:5s} {imgs:5d} images {views:6d} views"
            for split, (imgs, views) in self.counts.items()
        ]
        lines.append(f"  fingerprint {self.fingerprint}")
        lines += [f"  problem: {p}" for p in self.problems]
        return "\n".join(lines)


def verify(path: Path, block: int = 64) -> VerifyReport:
    """Check structure, per-view checksums, finite values and the fingerprint of a cache.

    Raises CacheError when the file cannot be opened as a cache at all.
    """
    with Cache.open(path) as cache:
        problems = _structure_problems(cache)
        if problems:
            return VerifyReport(Path(path), problems, {}, cache.fingerprint)
        ids, views = cache.column("image_id"), cache.column("view")
        stored = cache.column("view_sha256")
        digests = []
        for start in range(0, len(cache), block):
            rows = range(start, min(start + block, len(cache)))
            for row, record in zip(rows, _read_records(cache, rows, problems), strict=True):
                name = f"view {row} (image {ids[row]}, view {views[row]})"
                if record is None:
                    digests.append("")
                    continue
                if not np.isfinite(record["embeddings"]).all():
                    problems.append(f"{name}: embedding has NaN or infinite values")
                digests.append(view_digest(record))
                if digests[-1] != stored[row]:
                    problems.append(f"{name}: content does not match its sha256 (damaged)")
        identity = cache.config["identity"]
        if fingerprint(identity, stored.tolist()) != cache.fingerprint:
            problems.append("fingerprint does not match the config and view checksums")
        return VerifyReport(Path(path), problems, cache.counts(), cache.fingerprint)


def _structure_problems(cache: Cache) -> list[str]:
    n = len(cache)
    problems = []
    for name, (shape, _) in FIELDS.items():
        if name not in cache.file:
            problems.append(f"dataset {name!r} is missing")
        elif cache.file[name].shape != (n, *shape):
            problems.append(
                f"dataset {name!r} has shape {cache.file[name].shape}, expected {(n, *shape)}"
            )
    for module in ("prompt_encoder", "mask_decoder"):
        if f"sam/{module}" not in cache.file:
            problems.append(f"the pretrained {module} weights (sam/{module}) are missing")
    return problems


def _read_records(cache: Cache, rows: range, problems: list[str]) -> list[dict | None]:
    """Rows as dicts of the digest fields; None (and a problem) where HDF5 reports damage."""
    records: list[dict | None] = []
    for row in rows:
        try:
            records.append(
                {name: cache.file[name][row] for name in ("embeddings", "lowres_mask", "mask_png")}
            )
        except OSError as err:  # fletcher32 or HDF5 structure error on a damaged chunk
            problems.append(f"view {row}: cannot be read ({err})")
            records.append(None)
    return records
