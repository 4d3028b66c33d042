"""`verify`: a cache's structure, every checksum and finite values; `check_views`, the same
checks on what `train` and `evaluate` read."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from floodcache.cache.format import (
    CONFIG_SHA256,
    FIELDS,
    METADATA_FIELDS,
    METADATA_SHA256,
    SAM_SHA256,
    VIEW_FIELDS,
    CacheError,
    config_digest,
    fingerprint,
    metadata_digest,
    sam_digest,
    view_problems,
)
from floodcache.cache.reader import Cache
from floodcache.utils.program import command, option


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


OLDER = "written by an older floodcache: no checksum covers its metadata and SAM weights"


def verify(path: Path) -> VerifyReport:
    """Check structure, every checksum and finite values of a cache (`format` lists them).

    Raises CacheError when the file cannot be opened as a cache at all.
    """
    with Cache.open(path) as cache:
        problems = _structure_problems(cache)
        if problems:
            return VerifyReport(Path(path), problems, {}, cache.fingerprint)
        problems = _header_problems(cache) + _view_problems(cache, np.arange(len(cache)))
        return VerifyReport(Path(path), problems, cache.counts(), cache.fingerprint)


def check_cache(cache: Cache) -> None:
    """What `train` and `evaluate` call before they read: CacheError naming the fix unless
    the structure and the checksums of the identity, metadata and weights of the whole cache
    hold. Each view's own checksum is checked as its embedding is read
    (`Cache.load_embeddings`)."""
    _refuse_if(cache, _structure_problems(cache) or _header_problems(cache))


def check_views(cache: Cache, splits: tuple[str, ...]) -> None:
    """`check_cache`, and the checksums of every view of `splits` read now: for a reader that
    does not read through `Cache.load_embeddings` (a cache too large for memory)."""
    rows = np.flatnonzero(np.isin(cache.column("split"), splits))
    problems = _structure_problems(cache) or _header_problems(cache)
    _refuse_if(cache, problems or _view_problems(cache, rows))


def _refuse_if(cache: Cache, problems: list[str]) -> None:
    if problems:
        what = "cannot be checked" if problems == [OLDER] else "is damaged"
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise CacheError(
            f"{cache.path} {what}: {'; '.join(problems[:3])}{more}. "
            f"{command('verify', option('cache'), cache.path)} lists every problem; rebuild it "
            f"with {command('embed', option('overwrite'), '...')}"
        )


def _header_problems(cache: Cache) -> list[str]:
    """What covers the whole cache: the fingerprint (identity and view checksums), and the
    checksums of the metadata and of the SAM weights (missing in an older cache)."""
    attrs = cache.file.attrs
    try:
        identity = cache.config["identity"]
        views = cache.column("view_sha256").tolist()
    except (CacheError, KeyError, OSError) as err:
        return [f"its config or view checksums cannot be read ({err})"]
    problems = config_problems(cache)
    if fingerprint(identity, views) != cache.fingerprint:
        problems.append("fingerprint does not match the config and view checksums")
    for name in ("model_type", "checkpoint_sha256"):
        if str(attrs[name]) != str(identity.get(name)):
            problems.append(f"{name} {attrs[name]!r} is not its config's {identity.get(name)!r}")
    if METADATA_SHA256 not in attrs or SAM_SHA256 not in attrs:
        return [*problems, OLDER]
    try:
        columns = {name: cache.column(name) for name in METADATA_FIELDS}
    except OSError as err:
        return [*problems, f"its metadata cannot be read ({err})"]
    if metadata_digest(columns) != attrs[METADATA_SHA256]:
        fields = ", ".join(METADATA_FIELDS)
        problems.append(f"the metadata ({fields}) does not match its sha256 (damaged)")
    if sam_digest(cache.file["sam"]) != attrs[SAM_SHA256]:
        problems.append("the stored SAM weights (sam/) do not match their sha256 (damaged)")
    return problems


def config_problems(cache: Cache) -> list[str]:
    """Whether the config attr (settings, command, the data's audit: what a report says) is
    what its sha256 says. A cache written before config_sha256 existed has no audit in its
    config, and its report says so; one with an audit and no checksum was tampered with."""
    attrs = cache.file.attrs
    config = str(attrs["config"])
    if CONFIG_SHA256 not in attrs:
        recorded = "audit" in cache.config
        return ["its config records an audit but has no config_sha256 (edited)"] if recorded else []
    if config_digest(config) != attrs[CONFIG_SHA256]:
        return ["its config (settings, command, audit) does not match its sha256 (edited)"]
    return []


def _view_problems(cache: Cache, rows: np.ndarray, block: int = 64) -> list[str]:
    """Each of `rows` whose embedding is not finite or whose numbers do not match its sha256."""
    ids, views = cache.column("image_id"), cache.column("view")
    stored = cache.column("view_sha256")
    problems: list[str] = []
    for start in range(0, len(rows), block):
        chunk = rows[start : start + block].tolist()
        for row, record in zip(chunk, _read_records(cache, chunk, problems), strict=True):
            name = f"view {row} (image {ids[row]}, view {views[row]})"
            if record is not None:
                problems += [f"{name}: {found}" for found in view_problems(record, stored[row])]
    return problems


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


def _read_records(cache: Cache, rows: list[int], problems: list[str]) -> list[dict | None]:
    """Rows as dicts of the digest fields; None (and a problem) where HDF5 reports damage."""
    records: list[dict | None] = []
    for row in rows:
        try:
            records.append({name: cache.file[name][row] for name in VIEW_FIELDS})
        except OSError as err:  # fletcher32 or HDF5 structure error on a damaged chunk
            problems.append(f"view {row}: cannot be read ({err})")
            records.append(None)
    return records
