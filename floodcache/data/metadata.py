"""metadata.csv, the Kaggle layout's list of pairs (columns Image, Mask): its rows read and
checked, and the id each row's image goes by (`pairs` pairs the files they name)."""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
from pathlib import Path


def metadata_rows(metadata: Path) -> list[tuple[int, str, str]]:
    """(line, image name, mask name) of each row of metadata.csv. ValueError naming the file,
    the line and the fix for one that is not UTF-8 CSV with an Image and a Mask a row."""
    try:
        text = metadata.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{metadata} is not UTF-8 text (byte {err.start} is {err.object[err.start]:#04x}): "
            "save it as UTF-8 (Excel: CSV UTF-8), or remove it to pair images and masks by stem"
        ) from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        columns = {name.strip().lower(): name for name in reader.fieldnames or []}
        if not {"image", "mask"} <= set(columns):
            raise ValueError(
                f"{metadata}: needs the columns Image,Mask (found {reader.fieldnames}); fix its "
                "header, or remove it to pair images and masks by file stem"
            )
        return [_row(metadata, reader.line_num, row, columns) for row in reader]
    except csv.Error as err:
        raise ValueError(
            f"{metadata}: line {reader.line_num + 1} is not CSV ({err}); fix it"
        ) from None


def _row(metadata: Path, line: int, row: dict, columns: dict[str, str]) -> tuple[int, str, str]:
    names = [(row.get(columns[role]) or "").strip() for role in ("image", "mask")]
    for role, name in zip(("Image", "Mask"), names, strict=True):
        if not name or "\x00" in name:
            raise ValueError(
                f"{metadata}: line {line} has no {role} name{' but a NUL' if name else ''}; "
                "give every row an image and a mask file name, or remove the row"
            )
    return line, names[0], names[1]


def image_ids(metadata: Path, rows: list[tuple[int, str, str]]) -> list[str]:
    """Each row's image id: its file stem, or its file name where several images share the
    stem. ValueError naming both lines where even the names are the same."""
    stems = Counter(Path(image_name).stem for _, image_name, _ in rows)
    ids = [
        Path(name).stem if stems[Path(name).stem] == 1 else Path(name).name for _, name, _ in rows
    ]
    first: dict[str, int] = {}
    for image_id, (line, image_name, _) in zip(ids, rows, strict=True):
        if image_id in first:
            raise ValueError(
                f"{metadata}: line {line} lists {image_name}, and line {first[image_id]} another "
                f"image also known as {image_id!r}; rename one of them"
            )
        first[image_id] = line
    return ids


def refuse_outside(metadata: Path, rows: list[tuple[int, str, str]], folders: dict) -> None:
    """ValueError naming the line where a row names a file outside its folder (`folders`: role
    -> folder): an absolute path, or one that climbs out through `..`. A metadata.csv from
    elsewhere would otherwise have any file on the machine read, and stored in the cache."""
    for line, *names in rows:
        for (role, folder), name in zip(folders.items(), names, strict=True):
            normal = os.path.normpath(name)
            if (
                os.path.isabs(normal)
                or normal == os.pardir
                or normal.startswith(os.pardir + os.sep)
            ):
                raise ValueError(
                    f"{metadata}: line {line} lists the {role} {name}, outside {folder}; move the "
                    "file into the folder, or pass --allow-outside-paths if the file is meant"
                )
