"""Audit image/mask pairs: every problem of every pair, one row per (file, problem).

Every file is read once (`decode.read_image`, `decode.read_mask`); problems seen across pairs
(duplicates, swapped masks) come from their content hashes and sizes. Pairs that cannot be
used as they are get excluded; the report writes the rows as CSV and sums them up.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import io
import os
import threading
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from floodcache.data import raster
from floodcache.data.decode import (
    UnreadableFile,
    declared_pixels,
    has_text_name,
    path_str,
    read_image,
    read_mask,
)
from floodcache.data.findings import ranked, ranked_rows
from floodcache.data.pairs import (
    PROBLEMS,
    Pair,
    Problem,
    check_on_mismatch,
    find_pairs,
    size_problems,
)
from floodcache.settings import MAX_PIXELS
from floodcache.utils.atomic import write_whole

# Codes that make a pair unusable as it is; size_mismatch alone is lifted by on_mismatch="resize".
BLOCKING = (
    "undecodable_name",
    "missing_image",
    "missing_mask",
    "unreadable_image",
    "unreadable_mask",
    "size_mismatch",
    "aspect_mismatch",
    "georef_mismatch",
)
CSV_COLUMNS = ("image", "mask", "problem", "detail")
_THUMB = 128  # side of the mask thumbnails used to compare masks of duplicate images


@dataclass
class AuditReport:
    """What audit found: all pairs, one Problem per (file, problem), the usable pairs and the
    excluded ones (image_id -> blocking codes, in PROBLEMS order)."""

    pairs: list[Pair]
    problems: list[Problem]
    usable: list[Pair]
    excluded: dict[str, list[str]]
    on_mismatch: str = "exclude"
    # image_id -> sha256 of the decoded pixels: pixel-identical images share a split
    image_hashes: dict[str, str] = field(default_factory=dict)

    def write_csv(self, path: Path) -> None:
        """Write the problems as CSV with columns image, mask, problem, detail, whole or not at
        all (`write_whole`); text that is not UTF-8 (file names) as backslash escapes."""
        table = io.StringIO(newline="")
        writer = csv.writer(table)
        writer.writerow(CSV_COLUMNS)
        rows = ranked_rows(self.problems, len(self.pairs), BLOCKING)
        writer.writerows((p.image, p.mask, p.problem, p.detail) for p in rows)
        content = table.getvalue().encode("utf-8", "backslashreplace")
        write_whole(
            Path(path), lambda tmp: tmp.write_bytes(content), "give --out a path you can write"
        )

    def summary(self) -> str:
        """Terminal text: pair counts, rows per problem code, excluded pairs with their codes."""
        excluded = {path_str(key): codes for key, codes in self.excluded.items()}
        found = ranked(self.problems, len(self.pairs), BLOCKING)
        return summary(len(self.pairs), len(self.usable), excluded, found, self.on_mismatch)


def summary(
    pairs: int, usable: int, excluded: dict[str, list[str]], found: list, on_mismatch: str
) -> str:
    """An audit's terminal text: pairs, the `found` findings (`findings.ranked`: those that
    exclude a pair first, then the rarest; those on nearly every pair last, a line each), the
    excluded pairs (image -> codes); an `AuditReport`'s and a cache's record of one alike."""
    lines = [
        f"{pairs} pairs found, {usable} usable, "
        f"{len(excluded)} excluded (on_mismatch={on_mismatch})"
    ]
    rare = [finding for finding in found if not finding.common]
    common = [finding for finding in found if finding.common]
    width = max((len(finding.code) for finding in found), default=0)
    if rare:
        lines.append("problems (rows per code; those that exclude a pair first, then rarest):")
    lines += [f"  {f.code:<{width}} {f.rows:>5}  {PROBLEMS.get(f.code, '')}" for f in rare]
    if common:
        lines.append("on every pair or nearly, a trait of the data set rather than of a file:")
    lines += [
        f"  {f.code:<{width}} {f.rows:>5}  on {f.pairs} of {pairs} pairs: "
        f"{PROBLEMS.get(f.code, '')}"
        for f in common
    ]
    lines += [] if found else ["no problems found"]
    if excluded:
        lines.append("excluded:")
        lines += [f"  {key}: {', '.join(codes)}" for key, codes in excluded.items()]
    resizable = [key for key, codes in excluded.items() if codes == ["size_mismatch"]]
    if resizable:
        lines.append(
            f"{len(resizable)} of them only differ in size from their image: "
            "--on-mismatch resize would keep them"
        )
    return "\n".join(lines)


def audit(
    pairs: list[Pair],
    pairing_problems: Iterable[Problem] = (),
    on_mismatch: str = "exclude",
    progress: bool = False,
    max_pixels: int = MAX_PIXELS,
    reading: raster.RasterReading | None = None,
) -> AuditReport:
    """Read every file of `pairs` once (threads) and report every problem. `pairing_problems`
    (from find_pairs) lead the report's rows; on_mismatch="resize" keeps size_mismatch pairs
    whose aspect ratio matches. A file of more than `max_pixels` pixels is unreadable, and
    the threads decode at most that many pixels at once. `progress` shows a tqdm bar.
    Georeferenced images are read as `reading` says (`decode.read_image`)."""
    check_on_mismatch(on_mismatch)
    pairs = list(pairs)
    workers = min(4, os.cpu_count() or 1)
    budget = PixelBudget(max_pixels)
    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(lambda pair: _inspect(pair, budget, reading), pairs)
        bar = tqdm(results, total=len(pairs), desc="audit", unit="pair", disable=not progress)
        facts = list(bar)
    _add_cross_pair_problems(pairs, facts)
    blocking = [c for c in BLOCKING if not (on_mismatch == "resize" and c == "size_mismatch")]
    excluded = {
        pair.image_id: [code for code in blocking if code in found.codes]
        for pair, found in zip(pairs, facts, strict=True)
        if found.codes.intersection(blocking)
    }
    return AuditReport(
        pairs=pairs,
        problems=list(pairing_problems) + [row for found in facts for row in found.problems],
        usable=[pair for pair in pairs if pair.image_id not in excluded],
        excluded=excluded,
        on_mismatch=on_mismatch,
        image_hashes={
            pair.image_id: found.image_hash
            for pair, found in zip(pairs, facts, strict=True)
            if found.image_hash
        },
    )


@dataclass(frozen=True)
class Reading:
    """How audit_folder reads a data folder, beside which files it reads."""

    allow_outside_paths: bool = False  # metadata.csv may name files outside the data folder
    max_pixels: int = MAX_PIXELS  # a larger file is unreadable (a decompression bomb guard)
    raster: raster.RasterReading | None = None  # georeferenced images' bands and scale


def audit_folder(
    data_dir: Path | None = None,
    images: Path | None = None,
    masks: Path | None = None,
    on_mismatch: str = "exclude",
    progress: bool = False,
    reading: Reading = Reading(),  # noqa: B008 (frozen, so sharing it is safe)
) -> AuditReport:
    """find_pairs then audit: the whole audit of a data folder (see both)."""
    check_on_mismatch(on_mismatch)
    pairs, problems = find_pairs(data_dir, images, masks, reading.allow_outside_paths)
    return audit(pairs, problems, on_mismatch, progress, reading.max_pixels, reading.raster)


@dataclass
class _Facts:
    """What reading one pair found; hashes and sizes feed the checks across pairs."""

    image: str  # the pair's paths as Problem columns
    mask: str
    problems: list[Problem] = field(default_factory=list)
    codes: set[str] = field(default_factory=set)
    image_hw: tuple[int, int] | None = None
    mask_hw: tuple[int, int] | None = None
    image_hash: str | None = None
    mask_hash: str | None = None
    mask_thumb: np.ndarray | None = None  # _THUMB x _THUMB uint8 {0,1}: compares masks cheaply

    def add(self, code: str, detail: str) -> None:
        self.problems.append(Problem(self.image, self.mask, code, detail))
        self.codes.add(code)


class PixelBudget:
    """At most `limit` pixels decoded at once by the audit's threads: memory grows about ten
    bytes a pixel, so four huge files are not decoded together. A pair takes what its headers
    declare, at most all of it (files over the limit take nothing: they are refused before
    decoding)."""

    def __init__(self, limit: int):
        self.limit, self.taken = limit, 0
        self.changed = threading.Condition()

    @contextlib.contextmanager
    def reserve(self, paths: list[Path | None]):
        # a pair of two files under the limit may add up to more: it then waits to be alone
        pixels = min(self.limit, sum(n for n in map(declared_pixels, paths) if n <= self.limit))
        with self.changed:
            self.changed.wait_for(lambda: self.taken + pixels <= self.limit)
            self.taken += pixels
        try:
            yield
        finally:
            with self.changed:
                self.taken -= pixels
                self.changed.notify_all()


def _inspect(pair: Pair, budget: PixelBudget, reading: raster.RasterReading | None) -> _Facts:
    """Read both files of `pair` once (within `budget`; a georeferenced image as `reading`
    says) and collect their problems, sizes and content hashes."""
    with budget.reserve([pair.image_path, pair.mask_path]):
        return _read_pair(pair, budget.limit, reading)


def _read_pair(pair: Pair, max_pixels: int, reading: raster.RasterReading | None) -> _Facts:
    facts = _Facts(path_str(pair.image_path), path_str(pair.mask_path))
    pixels = {}
    for role, path, read in (
        ("image", pair.image_path, functools.partial(read_image, reading=reading)),
        ("mask", pair.mask_path, read_mask),
    ):
        if path is None:
            facts.codes.add(f"missing_{role}")
            continue
        if not has_text_name(path):
            facts.add("undecodable_name", f"{role}: {PROBLEMS['undecodable_name']}")
        try:
            pixels[role], notes = read(path, max_pixels)
        except UnreadableFile as error:
            facts.add(f"unreadable_{role}", str(error))
            continue
        for code, detail in notes:
            facts.add(code, f"{role}: {detail}")
    if "image" in pixels:
        facts.image_hw, facts.image_hash = pixels["image"].shape[:2], _digest(pixels["image"])
    if "mask" in pixels:
        mask = pixels["mask"]
        facts.mask_hw, facts.mask_hash = mask.shape, _digest(mask)
        facts.mask_thumb = cv2.resize(mask, (_THUMB, _THUMB), interpolation=cv2.INTER_NEAREST)
    if facts.image_hw and facts.mask_hw:
        for code, detail in size_problems(facts.image_hw, facts.mask_hw):
            facts.add(code, detail)
        _add_georef_problems(facts, pair)
    return facts


def _add_georef_problems(facts: _Facts, pair: Pair) -> None:
    """georef_mismatch where image and mask are both georeferenced, on different grids."""
    if pair.image_path is None or pair.mask_path is None:
        return
    image, mask = raster.georeference(pair.image_path), raster.georeference(pair.mask_path)
    if image is not None and mask is not None:
        found = image.differences(mask)
        if found:
            facts.add("georef_mismatch", f"image against mask: {'; '.join(found)}")


def _add_cross_pair_problems(pairs: list[Pair], facts: list[_Facts]) -> None:
    """duplicate_image, duplicate_mask and swapped_masks: problems seen only across pairs."""
    for code, key in (("duplicate_image", "image_hash"), ("duplicate_mask", "mask_hash")):
        groups = defaultdict(list)
        for index, found in enumerate(facts):
            if getattr(found, key):
                groups[getattr(found, key)].append(index)
        for group in (g for g in groups.values() if len(g) > 1):
            for index in group:
                others = [_duplicate_detail(pairs, facts, index, o, code) for o in group]
                facts[index].add(code, "; ".join(o for o in others if o))
    misfits = [i for i, found in enumerate(facts) if "size_mismatch" in found.codes]
    for index in misfits:
        for other in misfits:
            a, b = facts[index], facts[other]
            if other != index and a.mask_hw == b.image_hw and b.mask_hw == a.image_hw:
                a.add(
                    "swapped_masks",
                    f"this mask fits image {pairs[other].image_id} ({b.image}) and that "
                    f"pair's mask fits this image: swap the two mask files",
                )


def _duplicate_detail(pairs, facts, index: int, other: int, code: str) -> str:
    """How pair `index` duplicates pair `other` ("" for itself); images compare their masks."""
    if other == index:
        return ""
    if code == "duplicate_mask":
        return f"same mask as {pairs[other].image_id} ({facts[other].mask})"
    mine, theirs = facts[index].mask_thumb, facts[other].mask_thumb
    agreement = "their masks cannot be compared"
    if mine is not None and theirs is not None:
        union = np.count_nonzero(mine | theirs)
        iou = np.count_nonzero(mine & theirs) / union if union else 1.0
        agreement = f"mask IoU {iou:.2f} at {_THUMB}x{_THUMB}"
    return f"same pixels as {pairs[other].image_id} ({facts[other].image}), {agreement}"


def _digest(pixels: np.ndarray) -> str:
    """Content hash of an array, shape included: equal pixels, equal hash."""
    digest = hashlib.sha1(np.ascontiguousarray(pixels).data, usedforsecurity=False).hexdigest()
    return f"{pixels.shape}:{digest}"
