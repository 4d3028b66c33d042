"""Pairing images with masks, and reading them for real: by content, upright, 8-bit RGB and
{0, 1} masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from floodcache.data import audit
from floodcache.data import pairs as data
from tests.helpers import picture, save, save_rotated_jpeg, save_text, water


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


def test_images_sharing_a_stem_are_both_kept_by_their_file_names(tmp_path):
    save(tmp_path / "Image" / "0.jpg", picture(0), "JPEG")
    save(tmp_path / "Image" / "0.png", picture(1), "PNG")
    for seed, name in enumerate(("0.png", "3.png")):
        save(tmp_path / "Mask" / name, water(seed), "PNG")
    (tmp_path / "metadata.csv").write_text("Image,Mask\n0.jpg,0.png\n0.png,3.png\n")
    report = audit.audit_folder(tmp_path)
    assert [(p.image_id, p.image_path.name, p.mask_path.name) for p in report.usable] == [
        ("0.jpg", "0.jpg", "0.png"),
        ("0.png", "0.png", "3.png"),
    ]
    assert [r.problem for r in report.problems] == ["shared_stem", "shared_stem"]


def test_one_image_listed_twice_under_any_spelling_names_both_lines(tmp_path):
    save(tmp_path / "Image" / "0.jpg", picture(0), "JPEG")
    for seed, name in enumerate(("0.png", "1.png", "2.png")):
        save(tmp_path / "Mask" / name, water(seed), "PNG")
    for rows in (["0.jpg,0.png", "./0.jpg,1.png"], ["0.jpg,0.png", "sub/../0.jpg,2.png"]):
        (tmp_path / "metadata.csv").write_text("\n".join(["Image,Mask", *rows]) + "\n")
        with pytest.raises(ValueError, match=r"line 3 lists .*0.jpg, the image line 2 lists"):
            data.find_pairs(tmp_path)


def test_a_symbolic_link_loop_listed_in_metadata_is_a_missing_file(tmp_path):
    save(tmp_path / "Image" / "0.jpg", picture(0), "JPEG")
    save(tmp_path / "Mask" / "0.png", water(0), "PNG")
    (tmp_path / "Image" / "loop.jpg").symlink_to("loop.jpg")
    (tmp_path / "metadata.csv").write_text("Image,Mask\n0.jpg,0.png\nloop.jpg,0.png\n")
    report = audit.audit_folder(tmp_path)
    assert report.excluded == {"loop": ["missing_image"]} and len(report.usable) == 1


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


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("Image,Mask\ncafé.jpg,café.png\n".encode("latin-1"), r"is not UTF-8 text.*CSV UTF-8"),
        ("Image,Mask\n0.jpg,0.png\n".encode("utf-16"), r"is not UTF-8 text.*CSV UTF-8"),
        (b"Image,Mask\n0.jpg,0.png\n1.jpg\n", r": line 3 has no Mask name; give every row"),
        (b"Image,Mask\n,0.png\n", r": line 2 has no Image name"),
        (b"Image,Mask\n0.jpg,0\x00.png\n", r": line 2 has no Mask name but a NUL"),
        (b"Image,Mask\n0.jpg,0.png\n" + b"x" * 200_000 + b",1.png\n", r": line 3 is not CSV"),
    ],
    ids=["latin-1", "UTF-16", "short row", "no image", "NUL", "huge field"],
)
def test_a_metadata_csv_that_cannot_be_read_names_itself_and_the_fix(tmp_path, content, says):
    (tmp_path / "Image").mkdir()
    (tmp_path / "Mask").mkdir()
    (tmp_path / "metadata.csv").write_bytes(content)
    with pytest.raises(ValueError, match=rf"{tmp_path / 'metadata.csv'}.*{says}"):
        data.find_pairs(tmp_path)


@pytest.mark.parametrize(
    ("row", "names"),
    [
        ("../secret.jpg,0.png", "image ../secret.jpg"),
        ("0.jpg,../../secret.png", "mask ../../secret.png"),
        ("sub/../../secret.jpg,0.png", "image sub/../../secret.jpg"),
        ("{absolute},0.png", "image /"),
    ],
)
def test_metadata_naming_a_file_outside_its_folder_is_refused_unless_allowed(tmp_path, row, names):
    """A metadata.csv from elsewhere had any readable file decoded, and its preview cached."""
    folder = tmp_path / "data"
    save(folder / "Image" / "0.jpg", picture(0), "JPEG")
    save(folder / "Mask" / "0.png", water(0), "PNG")
    for secret in (folder / "secret.jpg", tmp_path / "secret.jpg"):
        save(secret, picture(1), "JPEG")
    save(tmp_path / "secret.png", water(1), "PNG")
    (folder / "Image" / "sub").mkdir()
    row = row.format(absolute=tmp_path / "secret.jpg")
    (folder / "metadata.csv").write_text(f"Image,Mask\n{row}\n")
    with pytest.raises(ValueError, match=rf"line 2 lists the {names}.*--allow-outside-paths"):
        data.find_pairs(folder)
    (pair,), _ = data.find_pairs(folder, allow_outside_paths=True)
    assert pair.image_path.is_file() and pair.mask_path.is_file()


def test_an_image_over_the_pixel_limit_is_refused_before_it_is_decoded(tmp_path, monkeypatch):
    """A 13000 x 13000 PNG of a few hundred KB took 1.8 GB to audit."""
    bomb = tmp_path / "bomb.png"
    Image.new("1", (13000, 13000)).save(bomb)
    assert bomb.stat().st_size < 1_000_000
    monkeypatch.setattr(Image.Image, "load", lambda image: pytest.fail("decoded the bomb"))
    with pytest.raises(data.UnreadableFile, match=r"bomb.png: the image is 13000 x 13000 pixels"):
        data.read_image(bomb)
    with pytest.raises(data.UnreadableFile, match=r"more than the 100,000,000 .*--max-pixels"):
        data.read_mask(bomb)


def test_the_pixel_limit_can_be_raised(tmp_path):
    save(tmp_path / "i.png", picture(0, 80, 100), "PNG")
    with pytest.raises(data.UnreadableFile, match="100 x 80 pixels, more than the 5,000 pixels"):
        data.read_image(tmp_path / "i.png", max_pixels=5000)
    assert data.read_image(tmp_path / "i.png", max_pixels=8000)[0].shape == (80, 100, 3)


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
