"""An output folder of `predict` (masks of a folder of photos, or of scenes): the record of
what made its predictions, checked before a run adds to them, and its table of one row per
file."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from floodcache.utils.atomic import write_whole
from floodcache.utils.identity import identity_of, refuse_other

SUMMARY = "predictions.csv"  # one row per file of the folder
RECORD = "predict.json"  # which decoder (and settings) made the masks of an output folder


def record_of(config: object, decoder: Path, decoder_sha256: str) -> dict:
    """What an output folder records of the predictions `config` makes: the decoder (its
    sha256 decides; its path is for the reader) and the identity fields of `config` (a
    `FolderConfig` or `SceneConfig`), as "settings"."""
    return {
        "decoder": str(decoder),
        "decoder_sha256": decoder_sha256,
        "settings": identity_of(config),
    }


def claim(out: Path, record: dict, masks: list[Path], overwrite: bool) -> None:
    """Make `out` this run's, recording its decoder and settings (RECORD, from `record_of`),
    without losing what it holds: the masks of another decoder or other settings, or files
    predict did not write, are replaced only with `overwrite`. Masks of the same record are
    kept (a rerun resumes). `record["decoder"]`, the run folder's path, may differ: its
    sha256 decides.

    With `overwrite` the masks there go first (the record before them), so that a run
    stopped part way never leaves masks of two decoders under one record."""
    record_file = out / RECORD
    if overwrite:
        for stale in (record_file, out / SUMMARY, *masks):
            stale.unlink(missing_ok=True)
    elif record_file.is_file():
        # a folder of photos made before its config declared its identity recorded no settings
        earlier = {"settings": {}} | json.loads(record_file.read_text())
        fix = "choose another --out, or pass --overwrite to replace them"
        if earlier["decoder_sha256"] != record["decoder_sha256"]:
            raise FileExistsError(
                f"{out} holds the masks of another decoder ({earlier['decoder']}); {fix}"
            )
        same = {key: value for key, value in earlier.items() if key != "decoder"}
        # as JSON keeps it (tuples become lists), to compare like with like
        asked = {k: v for k, v in json.loads(json.dumps(record)).items() if k != "decoder"}
        what = f"{out} holds masks made with other settings"
        refuse_other(same, asked, what, fix, FileExistsError, ("there", "are"))
    else:
        there = [mask.name for mask in masks if mask.exists()]
        if there:
            raise FileExistsError(
                f"{out} holds {there[0]} ({len(there)} such files), not written by predict; "
                "choose another --out, or pass --overwrite to replace them"
            )
    content = json.dumps(record, indent=1).encode()
    write_whole(record_file, lambda tmp: tmp.write_bytes(content))


def read_summary(path: Path) -> dict[str, dict]:
    """An earlier run's rows of images it segmented, by image file name."""
    if not path.is_file():
        return {}
    with path.open(newline="") as lines:
        rows = csv.DictReader(lines)
        return {row["image"]: row for row in rows if row.get("image") and not row.get("problem")}


def write_summary(path: Path, rows: list[dict], columns: tuple[str, ...]) -> None:
    """The rows as CSV, written whole."""
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, columns, restval="")
    writer.writeheader()
    writer.writerows(rows)
    write_whole(path, lambda tmp: tmp.write_bytes(table.getvalue().encode()))
