"""floodcache.data and floodcache.audit: pairing, reading by content, and the audit of every
problem code."""

from __future__ import annotations

import csv
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from floodcache import audit, data
from tests.datagen import picture, save, save_rotated_jpeg, save_text, water, write_zoo

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "flood_dataset"

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
}
UNUSABLE = {"zero_byte", "truncated", "text", "bad_mask", "no_mask", "no_image"}
UNUSABLE |= {"turned_mask", "swap_a", "swap_b"}


def codes_by_id(report: audit.AuditReport) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for row in report.problems:
        found.setdefault(Path(row.image or row.mask).stem, set()).add(row.problem)
    return found


def ids_with(report: audit.AuditReport, code: str) -> set[str]:
    return {Path(r.image or r.mask).stem for r in report.problems if r.problem == code}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> tuple[Path, Path]:
    return write_zoo(tmp_path_factory.mktemp("zoo"))


@pytest.fixture(scope="module")
def zoo_report(zoo) -> audit.AuditReport:
    return audit.audit_folder(images=zoo[0], masks=zoo[1])


def test_every_problem_code_is_documented_and_generated():
    generated = set().union(*ZOO_CODES.values()) | {"unlisted_image", "unlisted_mask"}
    assert generated == set(data.PROBLEMS)
    assert set(audit.BLOCKING) <= set(data.PROBLEMS)


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


def test_pairs_come_in_natural_order(tmp_path):
    for seed, stem in enumerate(("10", "2", "1", "b", "a2", "a10")):
        save(tmp_path / "im" / f"{stem}.png", picture(seed), "PNG")
        save(tmp_path / "ma" / f"{stem}.png", water(seed), "PNG")
    pairs, problems = data.find_pairs(images=tmp_path / "im", masks=tmp_path / "ma")
    assert [p.image_id for p in pairs] == ["1", "2", "10", "a2", "a10", "b"]
    assert problems == []


def test_metadata_maps_names_and_finds_missing_and_unlisted_files(tmp_path):
    for seed, stem in enumerate(("1", "2", "10", "extra")):
        save(tmp_path / "Image" / f"{stem}.jpg", picture(seed), "JPEG")
    for seed, name in enumerate(("1.png", "water_of_2.png", "10.png", "11.png", "extra.png")):
        save(tmp_path / "Mask" / name, water(seed), "PNG")
    rows = ["1.jpg,1.png", "2.jpg,water_of_2.png", "10.jpg,10.png", "11.jpg,11.png", "3.jpg,3.png"]
    (tmp_path / "metadata.csv").write_text("\n".join(["Image,Mask", *rows]) + "\n")
    report = audit.audit_folder(tmp_path)
    assert [p.image_id for p in report.pairs] == ["1", "2", "3", "10", "11"]
    assert report.pairs[1].mask_path == tmp_path / "Mask" / "water_of_2.png"
    assert [(Path(r.image or r.mask).name, r.problem) for r in report.problems] == [
        ("3.jpg", "missing_image"),
        ("3.jpg", "missing_mask"),
        ("11.jpg", "missing_image"),
        ("extra.jpg", "unlisted_image"),
        ("extra.png", "unlisted_mask"),
    ]
    assert report.problems[2].mask == str(tmp_path / "Mask" / "11.png")
    assert report.excluded == {"3": ["missing_image", "missing_mask"], "11": ["missing_image"]}


@pytest.mark.parametrize(
    ("arguments", "error", "names"),
    [
        ({"data_dir": "nowhere"}, FileNotFoundError, "--data nowhere"),
        ({"images": "nowhere", "masks": "."}, FileNotFoundError, "--images"),
        ({"images": "."}, ValueError, "--masks"),
        ({}, ValueError, "--data"),
    ],
)
def test_missing_folders_name_the_flag_to_fix(tmp_path, monkeypatch, arguments, error, names):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error, match=names):
        data.find_pairs(**arguments)


def test_kaggle_layout_without_mask_folder_names_it(tmp_path):
    (tmp_path / "Image").mkdir()
    with pytest.raises(FileNotFoundError, match="Mask"):
        data.find_pairs(tmp_path)


def test_ambiguous_stems_and_bad_metadata_header_are_errors(tmp_path):
    for name in ("0.jpg", "0.png"):
        save(tmp_path / "Image" / name, picture(0), "PNG")
    save(tmp_path / "Mask" / "0.png", water(0), "PNG")
    with pytest.raises(ValueError, match="stem '0'.*metadata.csv"):
        data.find_pairs(tmp_path)
    (tmp_path / "metadata.csv").write_text("file,label\n0.jpg,0.png\n")
    with pytest.raises(ValueError, match="Image,Mask"):
        data.find_pairs(tmp_path)


def test_sixteen_bit_image_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 65535, 257 * 100, 32896]], np.uint16)
    image, notes = data.read_image(save(tmp_path / "a.png", values, "PNG"))
    assert image.dtype == np.uint8 and image.shape == (1, 4, 3)
    assert image[0, :, 0].tolist() == [0, 255, 100, 128]
    assert (image[..., 0] == image[..., 2]).all()
    assert notes == [("converted_mode", "I;16 -> RGB")]


@pytest.mark.parametrize(
    ("mode", "value", "rgb"),
    [
        ("L", 77, (77, 77, 77)),
        ("RGBA", (10, 20, 30, 0), (10, 20, 30)),
        ("LA", (90, 255), (90, 90, 90)),
        ("CMYK", (0, 0, 0, 0), (255, 255, 255)),
        ("CMYK", (0, 255, 255, 0), (255, 0, 0)),
        ("1", 1, (255, 255, 255)),
        ("F", 0.5, (128, 128, 128)),
        ("I", 1000, (4, 4, 4)),
    ],
)
def test_any_mode_becomes_rgb(tmp_path, mode, value, rgb):
    path = save(tmp_path / "a.tif", Image.new(mode, (3, 2), value), "TIFF")
    image, notes = data.read_image(path)
    assert image.shape == (2, 3, 3) and image.dtype == np.uint8
    assert image.reshape(-1, 3).tolist() == [list(rgb)] * 6
    assert notes[0][0] == "converted_mode" and notes[0][1].startswith(f"{mode} -> RGB")


def test_palette_image_takes_its_palette_colours(tmp_path):
    palette_image = Image.new("P", (2, 1))
    palette_image.putpalette([0, 0, 0, 200, 100, 50])
    palette_image.putpixel((1, 0), 1)
    image, _ = data.read_image(save(tmp_path / "p.png", palette_image, "PNG"))
    assert image.tolist() == [[[0, 0, 0], [200, 100, 50]]]


def test_alpha_note_says_how_much_was_transparent(tmp_path):
    pixels = np.zeros((2, 2, 4), np.uint8)
    pixels[0, 0, 3] = 255
    _, notes = data.read_image(save(tmp_path / "a.png", pixels, "PNG"))
    assert notes == [
        ("converted_mode", "RGBA -> RGB, alpha dropped (0.7500 of pixels were transparent)")
    ]


def test_exif_orientation_turns_the_pixels(tmp_path):
    pixels = np.zeros((16, 32, 3), np.uint8)
    pixels[:, :16] = (255, 0, 0)  # red left half, blue right half
    pixels[:, 16:] = (0, 0, 255)
    image, notes = data.read_image(save_rotated_jpeg(tmp_path / "r.jpg", pixels, orientation=6))
    assert image.shape == (32, 16, 3)  # turned 90° clockwise: the left half is now on top
    assert image[4, 8, 0] > 200 and image[4, 8, 2] < 50
    assert image[28, 8, 2] > 200 and image[28, 8, 0] < 50
    assert notes == [("exif_orientation", "orientation 6: rotate 90° clockwise")]


@pytest.mark.parametrize(
    ("values", "dtype", "water_pixels", "grey"),
    [
        ([0, 100, 200, 255], np.uint8, [0, 0, 1, 1], "0.500000 of pixels are grey (not 0 and 255)"),
        ([0, 1, 1, 0], np.uint8, [0, 1, 1, 0], None),
        (
            [0, 65535, 40000, 100],
            np.uint16,
            [0, 1, 1, 0],
            "0.250000 of pixels are grey (not 0 and 255)",
        ),
        ([0, 1, 1, 1], np.uint16, [0, 1, 1, 1], None),
    ],
)
def test_masks_are_thresholded_to_water(tmp_path, values, dtype, water_pixels, grey):
    mask, notes = data.read_mask(save(tmp_path / "m.png", np.array([values], dtype), "PNG"))
    assert mask.dtype == np.uint8 and mask.tolist() == [water_pixels]
    assert dict(notes).get("non_binary_mask") == grey


def test_colour_masks_are_read_as_grey_levels(tmp_path):
    pixels = np.array([[[0, 0, 0, 255], [255, 255, 255, 255], [130, 130, 130, 0]]], np.uint8)
    mask, notes = data.read_mask(save(tmp_path / "m.png", pixels, "PNG"))
    assert mask.tolist() == [[0, 1, 1]]
    assert notes[0] == (
        "converted_mode",
        "RGBA -> L, alpha dropped (0.3333 of pixels were transparent)",
    )


def test_empty_mask_detail_gives_the_highest_value(tmp_path):
    _, notes = data.read_mask(save(tmp_path / "m.png", np.full((2, 2), 100, np.uint8), "PNG"))
    assert ("empty_mask", "no water pixel (highest value 100, water is >= half)") in notes


def test_unreadable_files_raise_naming_the_file(tmp_path):
    path = save_text(tmp_path / "page.jpg")
    with pytest.raises(data.UnreadableFile, match="page.jpg: cannot be read as an image"):
        data.read_image(path)
    with pytest.raises(data.UnreadableFile, match="missing.png"):
        data.read_mask(tmp_path / "missing.png")


def test_load_pair_returns_what_the_audit_read(zoo):
    images, masks = zoo
    image, mask = data.load_pair(data.Pair("exif", images / "exif.jpg", masks / "exif.png"))
    assert image.shape == (16, 12, 3) and mask.shape == (16, 12)
    assert mask.tolist() == (water(1001, 16, 12) > 0).astype(int).tolist()
    image, _ = data.load_pair(data.Pair("sixteen", images / "sixteen.png", masks / "sixteen.png"))
    assert image[..., 0].tolist() == picture(1005)[:, :, 0].tolist()  # x257 then /257


def test_load_pair_resizes_only_when_asked(zoo):
    images, masks = zoo
    small = data.Pair("small_mask", images / "small_mask.png", masks / "small_mask.png")
    with pytest.raises(ValueError, match="--on-mismatch resize"):
        data.load_pair(small)
    _, mask = data.load_pair(small, on_mismatch="resize")
    expected = np.kron(water(1014, 6, 8) > 0, np.ones((2, 2), bool)).astype(np.uint8)
    assert mask.shape == (12, 16) and (mask == expected).all()
    turned = data.Pair("turned_mask", images / "turned_mask.png", masks / "turned_mask.png")
    with pytest.raises(ValueError, match="aspect"):
        data.load_pair(turned, on_mismatch="resize")
    with pytest.raises(ValueError, match="no image file"):
        data.load_pair(data.Pair("no_image", None, masks / "no_image.png"))
    with pytest.raises(ValueError, match="--on-mismatch"):
        data.load_pair(small, on_mismatch="stretch")


def test_csv_has_one_row_per_problem(zoo_report, tmp_path):
    out = tmp_path / "reports" / "audit.csv"
    zoo_report.write_csv(out)
    with out.open(newline="") as lines:
        reader = csv.DictReader(lines)
        rows = list(reader)
    assert tuple(reader.fieldnames) == ("image", "mask", "problem", "detail")
    assert [data.Problem(**row) for row in rows] == zoo_report.problems


def test_summary_counts_codes_and_names_excluded_pairs(zoo_report):
    text = zoo_report.summary()
    total = len(ZOO_CODES)
    excluded = len(UNUSABLE) + 1
    assert f"{total} pairs found, {total - excluded} usable, {excluded} excluded" in text
    assert re.search(r"\n  unreadable_image +3  the image file cannot be decoded", text)
    assert "  turned_mask: size_mismatch, aspect_mismatch" in text
    assert "1 of them only differ in size from their image: --on-mismatch resize" in text


def test_progress_bar_does_not_change_the_report(zoo, zoo_report, capsys):
    pairs, problems = data.find_pairs(images=zoo[0], masks=zoo[1])
    assert audit.audit(pairs, problems, progress=True) == zoo_report
    assert "audit" in capsys.readouterr().err


# -- the real data set -------------------------------------------------------------------------

MISSING = {"1024", "1084", "2021", "3074"}
MISFIT = {"14", "15", "1061", "1079", "2052", "2053", "3059"}  # all of another aspect ratio
DUPLICATE_IMAGES = {"18", "1026", "26", "3020", "29", "35", "43", "1021", "46", "1044"}
DUPLICATE_IMAGES |= {"1012", "1057", "1033", "3029", "1041", "3033", "1049", "3019"}


@pytest.fixture(scope="module")
def real():
    if not REAL_DATA.is_dir():
        pytest.skip(f"real data set not found at {REAL_DATA}")
    start = time.perf_counter()
    report = audit.audit_folder(REAL_DATA)
    return report, time.perf_counter() - start


def test_real_data_pairs_and_exclusions(real):
    report, seconds = real
    assert seconds < 60
    assert len(report.pairs) == 290 and len(report.usable) == 279
    assert [p.image_id for p in report.pairs[48:52]] == ["48", "49", "1000", "1001"]
    assert set(report.excluded) == MISSING | MISFIT
    assert ids_with(report, "missing_image") == MISSING
    for code in ("missing_mask", "unreadable_image", "unreadable_mask", "empty_mask", "full_mask"):
        assert ids_with(report, code) == set()
    assert ids_with(report, "unlisted_image") == ids_with(report, "unlisted_mask") == set()


def test_real_data_file_problems(real):
    report, _ = real
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


def test_real_data_masks_that_belong_to_other_images(real):
    report, _ = real
    assert ids_with(report, "size_mismatch") == ids_with(report, "aspect_mismatch") == MISFIT
    assert ids_with(report, "swapped_masks") == {"14", "15", "2052", "2053"}
    assert ids_with(report, "duplicate_mask") == {"1032", "1061", "1038", "1079", "3034", "3059"}
    assert ids_with(report, "duplicate_image") == DUPLICATE_IMAGES


def test_real_data_resize_keeps_no_misfit(real, tmp_path):
    report, _ = real
    misfits = [p for p in report.pairs if p.image_id in MISFIT]
    assert set(audit.audit(misfits, on_mismatch="resize").excluded) == MISFIT


def test_real_data_exif_image_is_upright_and_fits_its_mask(real):
    report, _ = real
    pair = next(p for p in report.pairs if p.image_id == "2018")
    image, mask = data.load_pair(pair)
    assert image.shape[:2] == mask.shape == (332, 590)
    raw = np.asarray(Image.open(pair.image_path).convert("RGB"))
    assert (np.abs(image[::-1, ::-1].astype(int) - raw).mean()) < 1  # rotated 180°


def test_real_data_copy_of_a_file_is_a_duplicate(real, tmp_path):
    report, _ = real
    pair = report.pairs[0]
    shutil.copy(pair.image_path, tmp_path / "copy.jpg")
    shutil.copy(pair.mask_path, tmp_path / "copy.png")
    copy = data.Pair("copy", tmp_path / "copy.jpg", tmp_path / "copy.png")
    found = codes_by_id(audit.audit([pair, copy]))
    assert found["copy"] == {"duplicate_image", "duplicate_mask", "non_binary_mask"}
