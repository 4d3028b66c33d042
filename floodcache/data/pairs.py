"""Find image/mask pairs: files on disk -> pairs (`audit` checks every one of them), and load
a pair as every stage reads it (`decode`). PROBLEMS names every problem a pair can have:
pairing finds some (missing or unlisted files), reading others (`audit`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from floodcache.data.decode import path_str, read_image, read_mask
from floodcache.data.metadata import image_ids, metadata_rows, refuse_outside
from floodcache.data.raster import RasterReading
from floodcache.settings import MAX_PIXELS, ON_MISMATCH

PROBLEMS: dict[str, str] = {
    "missing_image": "the pair's image file does not exist (pair excluded)",
    "missing_mask": "the pair's mask file does not exist (pair excluded)",
    "unreadable_image": "the image file cannot be decoded (pair excluded)",
    "unreadable_mask": "the mask file cannot be decoded (pair excluded)",
    "size_mismatch": "mask and image sizes differ (pair excluded unless on_mismatch='resize')",
    "aspect_mismatch": "aspect ratios differ too: a resized mask would be stretched (excluded)",
    "georef_mismatch": "mask and image lie on different grids (CRS or transform) (excluded)",
    "swapped_masks": "this mask fits another pair's image, and that pair's mask fits this one",
    "duplicate_mask": "the mask equals another pair's mask (copied for the wrong image?)",
    "duplicate_image": "same pixels as another pair's image (leaks across splits; masks compared)",
    "exif_orientation": "EXIF orientation is not 1; the rotation/flip was applied",
    "format_mismatch": "the content is not the format its extension says; read by content",
    "converted_mode": "converted to 8-bit RGB (image) or L (mask) from the mode in detail",
    "non_binary_mask": "grey mask values (detail: their fraction); water is >= half range",
    "empty_mask": "the mask has no water pixel",
    "full_mask": "the mask is water everywhere",
    "unlisted_image": "an image file that metadata.csv does not list (not audited)",
    "unlisted_mask": "a mask file that metadata.csv does not list (not audited)",
    "shared_stem": "another image listed shares its file stem: both kept, known by file name",
    "undecodable_name": "the file name is not UTF-8 text, as a cache's names are: rename it",
}


@dataclass(frozen=True)
class Pair:
    """One image and its mask; a path is None when that file is missing."""

    # image file stem, e.g. "0" for Image/0.jpg; its name ("0.jpg") where another image listed
    # in metadata.csv shares the stem (`_image_ids`)
    image_id: str
    image_path: Path | None
    mask_path: Path | None


@dataclass(frozen=True)
class Problem:
    """One row of the audit: a problem of one file of a pair. Paths as str, "" when none."""

    image: str
    mask: str
    problem: str  # a key of PROBLEMS
    detail: str


def find_pairs(
    data_dir: Path | None = None,
    images: Path | None = None,
    masks: Path | None = None,
    allow_outside_paths: bool = False,
) -> tuple[list[Pair], list[Problem]]:
    """Pair images with masks: by metadata.csv (columns Image, Mask) when `data_dir` has one,
    else by file stem. `data_dir` is the Kaggle layout (DIR/Image, DIR/Mask); `images`/`masks`
    name the folders directly. metadata.csv may name files outside those folders only with
    `allow_outside_paths`. Returns pairs sorted by natural image id order, and the
    missing_image / missing_mask / unlisted_* problems found while pairing."""
    image_dir, mask_dir, metadata = _resolve_folders(data_dir, images, masks)
    if metadata is not None:
        rows = metadata_rows(metadata)
        if not allow_outside_paths:
            refuse_outside(metadata, rows, {"image": image_dir, "mask": mask_dir})
        pairs, problems = _pairs_from_metadata(metadata, rows, image_dir, mask_dir)
    else:
        pairs, problems = _pairs_by_stem(image_dir, mask_dir)
    pairs.sort(key=lambda pair: natural_key(pair.image_id))
    problems.sort(key=lambda row: natural_key(Path(row.image or row.mask).stem))
    return pairs, problems


def load_pair(
    pair: Pair,
    on_mismatch: str = "exclude",
    max_pixels: int = MAX_PIXELS,
    reading: RasterReading | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(HxWx3 uint8 RGB, HxW uint8 {0,1}) exactly as audit reads them (a georeferenced image
    as `reading` says). With on_mismatch="resize" a mask of another size but the same aspect
    ratio is resized (nearest) to the image.
    Raises UnreadableFile, or ValueError for a missing file or a mask that does not fit."""
    check_on_mismatch(on_mismatch)
    for role, path in (("image", pair.image_path), ("mask", pair.mask_path)):
        if path is None:
            raise ValueError(f"pair {pair.image_id} has no {role} file: use audit's usable pairs")
    assert pair.image_path is not None and pair.mask_path is not None  # checked just above
    image, _ = read_image(pair.image_path, max_pixels, reading)
    mask, _ = read_mask(pair.mask_path, max_pixels)
    misfit = dict(size_problems(image.shape[:2], mask.shape))
    if not misfit:
        return image, mask
    if "aspect_mismatch" in misfit:
        fix = misfit["aspect_mismatch"]
    elif on_mismatch == "resize":
        size = (image.shape[1], image.shape[0])
        return image, cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
    else:
        fix = "pass --on-mismatch resize (on_mismatch='resize') to resize the mask to the image"
    raise ValueError(
        f"{pair.mask_path} does not fit {pair.image_path}: {misfit['size_mismatch']}; {fix}"
    )


def size_problems(image_hw: tuple[int, int], mask_hw: tuple[int, int]) -> list[tuple[str, str]]:
    """size_mismatch (and aspect_mismatch when one scale cannot map the mask onto the image)."""
    if tuple(image_hw) == tuple(mask_hw):
        return []
    (ih, iw), (mh, mw) = image_hw, mask_hw
    size = f"image {iw}x{ih}, mask {mw}x{mh} (WxH)"
    if (mh, mw) == (iw, ih):
        size += ": the mask is the image turned 90°, drawn before or after EXIF rotation?"
    found = [("size_mismatch", size)]
    # one scale factor must map the mask onto the image within a pixel of rounding each way
    if abs(mh * iw / mw - ih) > max(1.0, iw / mw) or abs(mw * ih / mh - iw) > max(1.0, ih / mh):
        found.append(
            (
                "aspect_mismatch",
                f"image aspect {iw / ih:.3f}, mask {mw / mh:.3f}: resizing would stretch the "
                "mask, so the pair stays excluded; find the mask that belongs to this image",
            )
        )
    return found


def natural_key(text: str) -> list[tuple[int, int, str]]:
    """Sort key that puts "2" before "10": digit runs compare as numbers."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", text) if t]


def check_on_mismatch(on_mismatch: str) -> None:
    if on_mismatch not in ON_MISMATCH:
        raise ValueError(
            f"on_mismatch (--on-mismatch) must be one of {ON_MISMATCH}, not {on_mismatch!r}"
        )


def _resolve_folders(data_dir, images, masks) -> tuple[Path, Path, Path | None]:
    """(image folder, mask folder, metadata.csv or None); errors name the flags to fix."""
    if data_dir is None and (images is None or masks is None):
        raise ValueError(
            "give --data DIR (Kaggle layout: DIR/Image, DIR/Mask) or both --images and --masks"
        )
    if data_dir is not None and not Path(data_dir).is_dir():
        raise FileNotFoundError(
            f"--data {data_dir}: no such folder; give the folder that holds Image/ and Mask/"
        )
    images = Path(images) if images is not None else Path(data_dir) / "Image"
    masks = Path(masks) if masks is not None else Path(data_dir) / "Mask"
    for flag, folder in (("--images", images), ("--masks", masks)):
        if not folder.is_dir():
            raise FileNotFoundError(
                f"{folder}: no such folder; check --data (expects DIR/Image and DIR/Mask) or {flag}"
            )
    metadata = Path(data_dir) / "metadata.csv" if data_dir is not None else None
    return images, masks, metadata if metadata and metadata.is_file() else None


def _files(folder: Path) -> list[Path]:
    """Visible files of `folder`, sorted (hidden files such as .DS_Store are skipped)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def _pair(
    image_id: str, image: Path | None, mask: Path | None, why: str
) -> tuple[Pair, list[Problem]]:
    """A Pair of the files that exist, and a missing_* problem ({role} filled into `why`) for
    each that does not. `image`/`mask`: expected paths, None when not even a name is known."""
    pair = Pair(image_id, _if_file(image), _if_file(mask))
    columns = (path_str(image), path_str(mask))
    missing = [
        role
        for role, path in (("image", pair.image_path), ("mask", pair.mask_path))
        if path is None
    ]
    return pair, [Problem(*columns, f"missing_{role}", why.format(role=role)) for role in missing]


def _pairs_from_metadata(metadata: Path, rows: list, image_dir: Path, mask_dir: Path):
    """Pairs listed in metadata.csv (columns Image, Mask), plus missing and unlisted files.

    A row's files are known by their resolved paths: one image listed twice, under any
    spelling (`0.jpg`, `./0.jpg`), is an error naming both lines. Images of different files
    that share a stem (`0.jpg`, `0.png`) are both kept, known by their file names."""
    line_of: dict[Path, int] = {}  # resolved image -> the line listing it
    for line, image_name, _ in rows:
        image = _resolved(image_dir / image_name)
        if image in line_of:
            raise ValueError(
                f"{metadata}: line {line} lists {image_name}, the image line {line_of[image]} "
                "lists already; keep one row per image"
            )
        line_of[image] = line
    pairs, problems = [], []
    for (line, image_name, mask_name), image_id in zip(
        rows, image_ids(metadata, rows), strict=True
    ):
        why = f"the {{role}} listed on line {line} of {metadata} does not exist"
        pair, missing = _pair(image_id, image_dir / image_name, mask_dir / mask_name, why)
        pairs.append(pair)
        problems += missing
        if image_id != Path(image_name).stem:
            detail = f"another image listed has the stem {Path(image_name).stem!r}"
            problems.append(Problem(path_str(image_dir / image_name), "", "shared_stem", detail))
    listed_masks = {_resolved(mask_dir / mask_name) for _, _, mask_name in rows}
    unlisted = f"not listed in {metadata}: add a row for it, or move it out of the folder"
    for role, folder, listed in (("image", image_dir, line_of), ("mask", mask_dir, listed_masks)):
        for path in (p for p in _files(folder) if _resolved(p) not in listed):
            columns = (path_str(path), "") if role == "image" else ("", path_str(path))
            problems.append(Problem(*columns, f"unlisted_{role}", unlisted))
    return pairs, problems


def _resolved(path: Path) -> Path:
    """The file `path` names, symbolic links followed (a loop of them stays as it is, where
    Path.resolve raises: the file is then missing, as opening it would find)."""
    return Path(os.path.realpath(path))


def _pairs_by_stem(image_dir: Path, mask_dir: Path):
    """Pairs of image and mask files that share a file stem, plus missing_* problems."""
    image_files, mask_files = files_by_stem(image_dir), files_by_stem(mask_dir)
    pairs, problems = [], []
    for stem in set(image_files) | set(mask_files):
        folders = f"{image_dir} and {mask_dir}"
        why = f"no {{role}} file named {stem}.* next to the other file of the pair in {folders}"
        pair, missing = _pair(stem, image_files.get(stem), mask_files.get(stem), why)
        pairs.append(pair)
        problems += missing
    return pairs, problems


PAIRING_BY_STEM = (
    "so pairing by stem is ambiguous: rename one, or pair them with a metadata.csv (Image,Mask)"
)


def files_by_stem(folder: Path, why: str = PAIRING_BY_STEM) -> dict[str, Path]:
    """The visible files of `folder` by file stem. Raises ValueError naming both files and
    `why` it matters (what to do) where two share a stem."""
    by_stem: dict[str, Path] = {}
    for path in _files(folder):
        if path.stem in by_stem:
            raise ValueError(f"{by_stem[path.stem]} and {path} share the stem {path.stem!r}, {why}")
        by_stem[path.stem] = path
    return by_stem


def _if_file(path: Path | None) -> Path | None:
    return path if path is not None and path.is_file() else None
