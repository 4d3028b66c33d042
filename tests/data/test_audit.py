"""The audit: every problem of every pair, on generated defects and on the real data set."""

from __future__ import annotations

import csv
import os
import re
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from floodcache.data import audit, decode
from floodcache.data import pairs as data
from floodcache.data.findings import ranked_rows
from floodcache.data.raster import RasterReading
from tests.helpers import REAL_DATA, picture, save, water
from tests.rasters import write_chips

# datagen.write_zoo's pairs (paired by file stem) -> the exact codes the audit must report.
ZOO_CODES = {
    "ok": set(),
    "jpeg_as_png": {"format_mismatch"},
    "webp_as_jpg": {"format_mismatch"},
    "exif": {"exif_orientation"},
    "rgba": {"converted_mode"},
    "palette": {"converted_mode"},
    "cmyk": {"converted_mode"},
    "sixteen": {"converted_mode"},
    "grey": {"converted_mode"},
    "grey_mask": {"non_binary_mask"},
    "rgb_mask": {"converted_mode"},
    "empty": {"empty_mask"},
    "full": {"full_mask"},
    "zero_byte": {"unreadable_image"},
    "truncated": {"unreadable_image"},
    "text": {"unreadable_image"},
    "bad_mask": {"unreadable_mask"},
    "no_mask": {"missing_mask"},
    "no_image": {"missing_image"},
    "small_mask": {"size_mismatch"},
    "turned_mask": {"size_mismatch", "aspect_mismatch"},
    "swap_a": {"size_mismatch", "aspect_mismatch", "swapped_masks"},
    "swap_b": {"size_mismatch", "aspect_mismatch", "swapped_masks"},
    "dup_a": {"duplicate_image"},
    "dup_b": {"duplicate_image"},
    "copy_a": {"duplicate_mask"},
    "copy_b": {"duplicate_mask"},
    "georef": {"georef_mismatch"},
}


UNUSABLE = {"zero_byte", "truncated", "text", "bad_mask", "no_mask", "no_image"}
UNUSABLE |= {"turned_mask", "swap_a", "swap_b", "georef"}


def codes_by_id(report: audit.AuditReport) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for row in report.problems:
        found.setdefault(Path(row.image or row.mask).stem, set()).add(row.problem)
    return found


def ids_with(report: audit.AuditReport, code: str) -> set[str]:
    return {Path(r.image or r.mask).stem for r in report.problems if r.problem == code}


def test_every_problem_code_is_documented_and_generated():
    generated = set().union(*ZOO_CODES.values()) | {
        "unlisted_image",
        "unlisted_mask",
        "shared_stem",
        "undecodable_name",
    }
    assert generated == set(data.PROBLEMS)
    assert set(audit.BLOCKING) <= set(data.PROBLEMS)


def test_a_file_name_that_is_not_utf8_excludes_its_pair_and_the_csv_shows_it(tmp_path):
    """Such a name cannot go in a cache: embed failed as a whole, audit left half a CSV."""
    for seed, name in enumerate((b"caf\xe9", b"ok")):
        for folder, pixels in ((b"images", picture(seed)), (b"masks", water(seed))):
            path = os.path.join(os.fsencode(tmp_path), folder, name + b".png")
            save(Path(os.fsdecode(path)), pixels, "PNG")
    save(tmp_path / "images" / "lone.png", picture(2), "PNG")  # a problem row of its own
    report = audit.audit_folder(images=tmp_path / "images", masks=tmp_path / "masks")
    assert [p.image_id for p in report.usable] == ["ok"]
    assert report.excluded == {"caf\udce9": ["undecodable_name"], "lone": ["missing_mask"]}
    assert "caf\\xe9: undecodable_name" in report.summary()
    report.write_csv(tmp_path / "audit.csv")
    with open(tmp_path / "audit.csv", newline="", encoding="utf-8") as lines:
        rows = list(csv.DictReader(lines))
    assert [(Path(r["image"]).name, r["problem"]) for r in rows] == [
        ("lone.png", "missing_mask"),
        ("caf\\xe9.png", "undecodable_name"),
        ("caf\\xe9.png", "undecodable_name"),
    ]


@pytest.mark.parametrize(("max_pixels", "at_once"), [(300, 1), (500, 1), (5000, 4)])
def test_audit_decodes_at_most_max_pixels_at_once(tmp_path, monkeypatch, max_pixels, at_once):
    """Four large files at once cost four times one: the threads wait for the budget."""
    for seed in range(4):
        save(tmp_path / "images" / f"{seed}.png", picture(seed, 12, 16), "PNG")
        save(tmp_path / "masks" / f"{seed}.png", water(seed, 12, 16), "PNG")
    reading, most = [0], [0]
    lock = threading.Lock()

    def slow(read):
        def counted(path, max_pixels, **reading_as):
            with lock:
                reading[0] += 1
                most[0] = max(most[0], reading[0])
            time.sleep(0.2)
            with lock:
                reading[0] -= 1
            return read(path, max_pixels, **reading_as)

        return counted

    monkeypatch.setattr(audit, "read_image", slow(decode.read_image))
    monkeypatch.setattr(audit, "read_mask", slow(decode.read_mask))
    images, masks = tmp_path / "images", tmp_path / "masks"
    report = audit.audit_folder(
        images=images, masks=masks, reading=audit.Reading(max_pixels=max_pixels)
    )
    assert len(report.usable) == 4 and most[0] == min(at_once, audit.os.cpu_count() or 1)


def test_audit_leaves_out_a_file_over_the_pixel_limit(tmp_path):
    for seed, size in enumerate([(12, 16), (40, 50)]):
        save(tmp_path / "images" / f"{seed}.png", picture(seed, *size), "PNG")
        save(tmp_path / "masks" / f"{seed}.png", water(seed, *size), "PNG")
    images, masks = tmp_path / "images", tmp_path / "masks"
    report = audit.audit_folder(images=images, masks=masks, reading=audit.Reading(max_pixels=1000))
    assert report.excluded == {"1": ["unreadable_image", "unreadable_mask"]}
    assert "--max-pixels" in report.problems[0].detail


def test_audit_reports_exactly_the_defects_of_each_pair(zoo_report):
    found = codes_by_id(zoo_report)
    assert {key: found.get(key, set()) for key in ZOO_CODES} == ZOO_CODES


def test_unusable_pairs_are_excluded_with_their_blocking_codes(zoo_report):
    assert set(zoo_report.excluded) == UNUSABLE | {"small_mask"}
    assert {p.image_id for p in zoo_report.usable} == set(ZOO_CODES) - UNUSABLE - {"small_mask"}
    assert zoo_report.excluded["turned_mask"] == ["size_mismatch", "aspect_mismatch"]
    assert zoo_report.excluded["no_image"] == ["missing_image"]
    assert zoo_report.excluded["truncated"] == ["unreadable_image"]


def test_resize_opt_in_keeps_only_masks_of_the_same_aspect_ratio(zoo):
    report = audit.audit_folder(images=zoo[0], masks=zoo[1], on_mismatch="resize")
    assert set(report.excluded) == UNUSABLE
    assert "size_mismatch" in codes_by_id(report)["small_mask"]  # still reported
    assert report.excluded["swap_a"] == ["aspect_mismatch"]


def test_details_say_what_was_found(zoo_report):
    details = {(Path(r.image or r.mask).stem, r.problem): r.detail for r in zoo_report.problems}
    assert details["webp_as_jpg", "format_mismatch"] == "image: content is WEBP, extension is .jpg"
    assert details["jpeg_as_png", "format_mismatch"] == "image: content is JPEG, extension is .png"
    assert details["exif", "exif_orientation"] == "image: orientation 6: rotate 90° clockwise"
    assert details["sixteen", "converted_mode"] == "image: I;16 -> RGB"
    assert details["rgb_mask", "converted_mode"] == "mask: RGB -> L"
    assert (
        details["grey_mask", "non_binary_mask"]
        == "mask: 1.000000 of pixels are grey (not 0 and 255)"
    )
    assert details["small_mask", "size_mismatch"] == "image 16x12, mask 8x6 (WxH)"
    assert "truncated" in details["truncated", "unreadable_image"]
    assert "swap_b" in details["swap_a", "swapped_masks"]
    assert details["dup_a", "duplicate_image"].startswith("same pixels as dup_b")
    assert "mask IoU" in details["dup_a", "duplicate_image"]
    assert details["copy_b", "duplicate_mask"].startswith("same mask as copy_a")


def test_csv_has_one_row_per_problem(zoo_report, tmp_path):
    out = tmp_path / "reports" / "audit.csv"
    zoo_report.write_csv(out)
    with out.open(newline="") as lines:
        reader = csv.DictReader(lines)
        rows = list(reader)
    assert tuple(reader.fieldnames) == ("image", "mask", "problem", "detail")
    ranked = ranked_rows(zoo_report.problems, len(zoo_report.pairs), audit.BLOCKING)
    assert [data.Problem(**row) for row in rows] == ranked
    assert sorted(ranked, key=str) == sorted(zoo_report.problems, key=str)


def test_summary_counts_codes_and_names_excluded_pairs(zoo_report):
    text = zoo_report.summary()
    total = len(ZOO_CODES)
    excluded = len(UNUSABLE) + 1
    assert f"{total} pairs found, {total - excluded} usable, {excluded} excluded" in text
    assert re.search(r"\n  unreadable_image +3  the image file cannot be decoded", text)
    assert "  turned_mask: size_mismatch, aspect_mismatch" in text
    assert "1 of them only differ in size from their image: --on-mismatch resize" in text


def test_a_finding_on_nearly_every_pair_is_one_line_after_the_rare_ones(tmp_path):
    """10 of 11 masks have grey (anti-aliased) edges: one line with its count, after the
    missing mask and the mislabelled image, which are what a user must act on; in the CSV
    too, the grey masks' rows come last."""
    for seed in range(11):
        image_format = "JPEG" if seed == 7 else "PNG"  # a JPEG named .png
        save(tmp_path / "images" / f"{seed}.png", picture(seed), image_format)
        if seed != 3:  # no mask
            grey = water(seed)
            grey[0, 0] = 128
            save(tmp_path / "masks" / f"{seed}.png", grey, "PNG")
    report = audit.audit_folder(images=tmp_path / "images", masks=tmp_path / "masks")
    lines = report.summary().splitlines()
    codes = [line.split()[0] for line in lines if line.startswith("  ")]
    assert codes[:3] == ["missing_mask", "format_mismatch", "non_binary_mask"]
    assert (
        lines.index("on every pair or nearly, a trait of the data set rather than of a file:") == 4
    )
    assert lines[5].split()[:7] == ["non_binary_mask", "10", "on", "10", "of", "11", "pairs:"]
    report.write_csv(tmp_path / "audit.csv")
    with open(tmp_path / "audit.csv", newline="") as table:
        problems = [row["problem"] for row in csv.DictReader(table)]
    assert problems == ["missing_mask", "format_mismatch"] + ["non_binary_mask"] * 10


def test_progress_bar_does_not_change_the_report(zoo, zoo_report, capsys):
    pairs, problems = data.find_pairs(images=zoo[0], masks=zoo[1])
    assert audit.audit(pairs, problems, progress=True) == zoo_report
    assert "audit" in capsys.readouterr().err


MISSING = {"1024", "1084", "2021", "3074"}


MISFIT = {"14", "15", "1061", "1079", "2052", "2053", "3059"}  # all of another aspect ratio


DUPLICATE_IMAGES = {"18", "1026", "26", "3020", "29", "35", "43", "1021", "46", "1044"}
DUPLICATE_IMAGES |= {"1012", "1057", "1033", "3029", "1041", "3033", "1049", "3019"}


@pytest.fixture(scope="module")
def real():
    if not REAL_DATA.is_dir():
        pytest.skip(f"real data set not found at {REAL_DATA}")
    return audit.audit_folder(REAL_DATA)


def test_real_data_pairs_and_exclusions(real):
    report = real
    assert len(report.pairs) == 290 and len(report.usable) == 279
    assert [p.image_id for p in report.pairs[48:52]] == ["48", "49", "1000", "1001"]
    assert set(report.excluded) == MISSING | MISFIT
    assert ids_with(report, "missing_image") == MISSING
    for code in ("missing_mask", "unreadable_image", "unreadable_mask", "empty_mask", "full_mask"):
        assert ids_with(report, code) == set()
    assert ids_with(report, "unlisted_image") == ids_with(report, "unlisted_mask") == set()


def test_real_data_file_problems(real):
    report = real
    rows = report.problems
    formats = [r.detail for r in rows if r.problem == "format_mismatch"]
    assert len(formats) == 43 and formats.count("image: content is WEBP, extension is .jpg") == 41
    png = {
        Path(r.image).stem for r in rows if r.detail == "image: content is PNG, extension is .jpg"
    }
    assert png == {"2", "2017"}
    assert [(Path(r.image).stem, r.detail) for r in rows if r.problem == "exif_orientation"] == [
        ("2018", "image: orientation 3: rotate 180°")
    ]
    assert [(Path(r.image).stem, r.detail) for r in rows if r.problem == "converted_mode"] == [
        ("2", "image: RGBA -> RGB, alpha dropped (0.0000 of pixels were transparent)")
    ]
    grey = [float(r.detail.split()[1]) for r in rows if r.problem == "non_binary_mask"]
    assert len(grey) == 290 and 0 < min(grey) and max(grey) < 0.05  # anti-aliased edges only


def test_real_data_findings_are_ranked_and_the_grey_masks_are_one_line_last(real, tmp_path):
    """Every one of the 290 masks has grey edges: one line at the end, not 290 rows first;
    the missing and misfit files come first, then the rarest findings."""
    lines = real.summary().splitlines()
    codes = [line.split()[0] for line in lines if line.startswith("  ") and ":" not in line[:20]]
    blocking, others = codes[:3], codes[3:]
    assert blocking == ["missing_image", "size_mismatch", "aspect_mismatch"]
    assert others[:2] == ["exif_orientation", "converted_mode"]  # one file each
    assert others.index("duplicate_image") < others.index("format_mismatch")
    assert others[-1] == "non_binary_mask" and codes.count("non_binary_mask") == 1
    (grey,) = [line for line in lines if "non_binary_mask" in line]
    assert "290  on 290 of 290 pairs" in grey
    real.write_csv(tmp_path / "audit.csv")
    with open(tmp_path / "audit.csv", newline="") as table:
        problems = [row["problem"] for row in csv.DictReader(table)]
    assert problems[:4] == ["missing_image"] * 4
    assert problems[-290:] == ["non_binary_mask"] * 290


def test_real_data_masks_that_belong_to_other_images(real):
    report = real
    assert ids_with(report, "size_mismatch") == ids_with(report, "aspect_mismatch") == MISFIT
    assert ids_with(report, "swapped_masks") == {"14", "15", "2052", "2053"}
    assert ids_with(report, "duplicate_mask") == {"1032", "1061", "1038", "1079", "3034", "3059"}
    assert ids_with(report, "duplicate_image") == DUPLICATE_IMAGES


def test_real_data_resize_keeps_no_misfit(real, tmp_path):
    report = real
    misfits = [p for p in report.pairs if p.image_id in MISFIT]
    assert set(audit.audit(misfits, on_mismatch="resize").excluded) == MISFIT


def test_real_data_exif_image_is_upright_and_fits_its_mask(real):
    report = real
    pair = next(p for p in report.pairs if p.image_id == "2018")
    image, mask = data.load_pair(pair)
    assert image.shape[:2] == mask.shape == (332, 590)
    raw = np.asarray(Image.open(pair.image_path).convert("RGB"))
    assert (np.abs(image[::-1, ::-1].astype(int) - raw).mean()) < 1  # rotated 180°


def test_real_data_copy_of_a_file_is_a_duplicate(real, tmp_path):
    report = real
    pair = report.pairs[0]
    shutil.copy(pair.image_path, tmp_path / "copy.jpg")
    shutil.copy(pair.mask_path, tmp_path / "copy.png")
    copy = data.Pair("copy", tmp_path / "copy.jpg", tmp_path / "copy.png")
    found = codes_by_id(audit.audit([pair, copy]))
    assert found["copy"] == {"duplicate_image", "duplicate_mask", "non_binary_mask"}


def test_georeferenced_chips_are_read_with_the_bands_and_scaling_asked(tmp_path):
    """Sen1Floods11-style chips: 4 bands of uint16, masks with -1 for no data."""
    import rasterio

    images, masks = write_chips(tmp_path)
    report = audit.audit_folder(
        images=images, masks=masks, reading=audit.Reading(raster=RasterReading(bands=(3, 2, 1)))
    )
    assert len(report.usable) == 3 and not report.excluded
    details = [row.detail for row in report.problems if row.problem == "converted_mode"]
    assert sum("bands 3,2,1 of 4 (uint16), percentile 2-98" in d for d in details) == 3
    assert any("without data or negative, read as not water" in d for d in details)
    with pytest.raises(ValueError, match=r"chip_0.tif has 4 bands, so --bands 5,3,2 .* 1 to 4"):
        audit.audit_folder(
            images=images,
            masks=masks,
            reading=audit.Reading(raster=RasterReading(bands=(5, 3, 2))),
        )
    with rasterio.open(masks / "chip_1.tif", "r+") as mask:
        mask.crs = "EPSG:32617"  # the next UTM zone: the mask lies elsewhere
    report = audit.audit_folder(images=images, masks=masks)
    (row,) = [row for row in report.problems if row.problem == "georef_mismatch"]
    assert "chip_1" in row.image and "CRS EPSG:32618 vs EPSG:32617" in row.detail
    assert report.excluded == {"chip_1": ["georef_mismatch"]}
