"""Decoding images and masks by content (floodcache/data/decode.py)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from floodcache.data import decode
from tests.helpers import picture, save, save_rotated_jpeg, save_text
from tests.rasters import write_chips


def test_an_image_over_the_pixel_limit_is_refused_before_it_is_decoded(tmp_path, monkeypatch):
    """A 13000 x 13000 PNG of a few hundred KB took 1.8 GB to audit."""
    bomb = tmp_path / "bomb.png"
    Image.new("1", (13000, 13000)).save(bomb)
    assert bomb.stat().st_size < 1_000_000
    monkeypatch.setattr(Image.Image, "load", lambda image: pytest.fail("decoded the bomb"))
    with pytest.raises(decode.UnreadableFile, match=r"bomb.png: the image is 13000 x 13000 pixels"):
        decode.read_image(bomb)
    with pytest.raises(decode.UnreadableFile, match=r"more than the 100,000,000 .*--max-pixels"):
        decode.read_mask(bomb)


def test_the_pixel_limit_can_be_raised(tmp_path):
    save(tmp_path / "i.png", picture(0, 80, 100), "PNG")
    with pytest.raises(decode.UnreadableFile, match="100 x 80 pixels, more than the 5,000 pixels"):
        decode.read_image(tmp_path / "i.png", max_pixels=5000)
    assert decode.read_image(tmp_path / "i.png", max_pixels=8000)[0].shape == (80, 100, 3)


def test_sixteen_bit_image_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 65535, 257 * 100, 32896]], np.uint16)
    image, notes = decode.read_image(save(tmp_path / "a.png", values, "PNG"))
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
    image, notes = decode.read_image(path)
    assert image.shape == (2, 3, 3) and image.dtype == np.uint8
    assert image.reshape(-1, 3).tolist() == [list(rgb)] * 6
    assert notes[0][0] == "converted_mode" and notes[0][1].startswith(f"{mode} -> RGB")


def test_palette_image_takes_its_palette_colours(tmp_path):
    palette_image = Image.new("P", (2, 1))
    palette_image.putpalette([0, 0, 0, 200, 100, 50])
    palette_image.putpixel((1, 0), 1)
    image, _ = decode.read_image(save(tmp_path / "p.png", palette_image, "PNG"))
    assert image.tolist() == [[[0, 0, 0], [200, 100, 50]]]


def test_alpha_note_says_how_much_was_transparent(tmp_path):
    pixels = np.zeros((2, 2, 4), np.uint8)
    pixels[0, 0, 3] = 255
    _, notes = decode.read_image(save(tmp_path / "a.png", pixels, "PNG"))
    assert notes == [
        ("converted_mode", "RGBA -> RGB, alpha dropped (0.7500 of pixels were transparent)")
    ]


def test_exif_orientation_turns_the_pixels(tmp_path):
    pixels = np.zeros((16, 32, 3), np.uint8)
    pixels[:, :16] = (255, 0, 0)  # red left half, blue right half
    pixels[:, 16:] = (0, 0, 255)
    image, notes = decode.read_image(save_rotated_jpeg(tmp_path / "r.jpg", pixels, orientation=6))
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
    mask, notes = decode.read_mask(save(tmp_path / "m.png", np.array([values], dtype), "PNG"))
    assert mask.dtype == np.uint8 and mask.tolist() == [water_pixels]
    assert dict(notes).get("non_binary_mask") == grey


def test_colour_masks_are_read_as_grey_levels(tmp_path):
    pixels = np.array([[[0, 0, 0, 255], [255, 255, 255, 255], [130, 130, 130, 0]]], np.uint8)
    mask, notes = decode.read_mask(save(tmp_path / "m.png", pixels, "PNG"))
    assert mask.tolist() == [[0, 1, 1]]
    assert notes[0] == (
        "converted_mode",
        "RGBA -> L, alpha dropped (0.3333 of pixels were transparent)",
    )


def test_empty_mask_detail_gives_the_highest_value(tmp_path):
    _, notes = decode.read_mask(save(tmp_path / "m.png", np.full((2, 2), 100, np.uint8), "PNG"))
    assert ("empty_mask", "no water pixel (highest value 100, water is >= half)") in notes


def test_unreadable_files_raise_naming_the_file(tmp_path):
    path = save_text(tmp_path / "page.jpg")
    with pytest.raises(decode.UnreadableFile, match="page.jpg: cannot be read as an image"):
        decode.read_image(path)
    with pytest.raises(decode.UnreadableFile, match="missing.png"):
        decode.read_mask(tmp_path / "missing.png")


def test_a_georeferenced_chip_over_the_pixel_limit_is_refused_before_gdal_reads_it(
    tmp_path, monkeypatch
):
    images, masks = write_chips(tmp_path)  # 64 x 64 GeoTIFF chips
    chip = sorted(images.iterdir())[0]
    monkeypatch.setattr(decode.raster, "read_chip", _never_read)
    monkeypatch.setattr(decode.raster, "read_mask_values", _never_read)
    with pytest.raises(decode.UnreadableFile, match=r"image is 64 x 64 pixels.*--max-pixels"):
        decode.read_image(chip, max_pixels=64 * 64 - 1)
    with pytest.raises(decode.UnreadableFile, match=r"mask is 64 x 64 pixels.*--max-pixels"):
        decode.read_mask(masks / chip.name, max_pixels=64 * 64 - 1)


def _never_read(*args):
    raise AssertionError("read past the pixel limit")
