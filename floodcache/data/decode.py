"""Decode image and mask files by content, as every stage reads them: images as HxWx3 uint8
RGB with their EXIF orientation applied, masks as HxW uint8 in {0, 1} (1 = water), each with
notes of what was found (format, orientation, conversion). A georeferenced raster is read by
GDAL (`raster`). A file over the pixel limit is refused from its header, before decoding.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from floodcache.data import raster
from floodcache.data.raster import RasterReading
from floodcache.settings import MAX_PIXELS

# Pillow's own limit warns, then refuses, at fixed sizes: floodcache applies its own, which a
# user may raise (--max-pixels), from the header, before anything is decoded (`_open`).
Image.MAX_IMAGE_PIXELS = None

# MPO is how Pillow names camera JPEGs that carry a preview: still a JPEG file.
_EXTENSION_FORMATS = {".jpg": ("JPEG", "MPO"), ".jpeg": ("JPEG", "MPO"), ".png": ("PNG",)}


_EXTENSION_FORMATS |= {".webp": ("WEBP",), ".tif": ("TIFF",), ".tiff": ("TIFF",)}


_EXTENSION_FORMATS |= {".bmp": ("BMP",), ".gif": ("GIF",)}


# Modes whose pixels are not 8-bit: converted by value range, since Pillow would clip them.
_NUMERIC_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


class UnreadableFile(ValueError):
    """A file that cannot be decoded as an image; the message names the file and the cause."""


def read_image(
    path: Path, max_pixels: int = MAX_PIXELS, reading: RasterReading | None = None
) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Decode an image by content -> (HxWx3 uint8 RGB with EXIF orientation applied, notes).

    Notes are (code, detail) for format_mismatch, exif_orientation and converted_mode; 16-bit
    pixels are scaled (65535 -> 255), not clipped. A georeferenced raster (GeoTIFF...) is read
    by GDAL, its bands and scaling as `reading` says (`raster.read_chip`). Raises
    UnreadableFile, also for an image of more than `max_pixels` pixels, before decoding it."""
    georeference = raster.georeference(path)
    if georeference is not None:
        _check_pixels(path, "image", georeference.size[::-1], max_pixels)
        return _read_raster(raster.read_chip, path, reading or RasterReading())
    image, notes = _open(Path(path), "image", max_pixels)
    if image.mode == "RGB":
        return np.array(image), notes
    if image.mode in _NUMERIC_MODES:
        rgb = np.repeat(_to_uint8(np.asarray(image))[:, :, None], 3, axis=2)
    else:
        rgb = np.array(_convert(image, "RGB", path))
    notes.append(("converted_mode", f"{image.mode} -> RGB{_alpha_note(image)}"))
    return rgb, notes


def read_mask(path: Path, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Decode a mask by content -> (HxW uint8 in {0, 1}, 1 = water; notes).

    EXIF orientation is applied as for images. Any mode becomes 8-bit L first (16-bit scaled,
    RGB by luminance); a mask whose maximum is 1 is 0/1-coded. Water is value >= 128 of 255.
    A georeferenced raster's first band is read by GDAL, pixels without data (and negative
    values) as not water (`raster.read_mask_values`). Notes add non_binary_mask, empty_mask
    and full_mask to those of read_image. Raises UnreadableFile."""
    georeference = raster.georeference(path)
    if georeference is not None:
        _check_pixels(path, "mask", georeference.size[::-1], max_pixels)
        values, notes = _read_raster(raster.read_mask_values, path)
    else:
        values, notes = _mask_values(Path(path), max_pixels)
    one_coded = values.max() == 1 and values.min() >= 0
    levels = _to_uint8(values.astype(np.float32) * 255 if one_coded else values)
    grey = np.count_nonzero((levels != 0) & (levels != 255)) / levels.size
    if grey:
        extremes = "0 and 1" if one_coded else "0 and 255"
        notes.append(("non_binary_mask", f"{grey:.6f} of pixels are grey (not {extremes})"))
    water = levels >= 128
    if not water.any():
        top = values.max()
        notes.append(("empty_mask", f"no water pixel (highest value {top}, water is >= half)"))
    elif water.all():
        notes.append(("full_mask", "every pixel is water"))
    return water.astype(np.uint8), notes


def _mask_values(path: Path, max_pixels: int) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """A mask file decoded by Pillow -> (HxW values: 8-bit, 16-bit or float; notes)."""
    mask, notes = _open(path, "mask", max_pixels)
    if mask.mode == "L" or mask.mode in _NUMERIC_MODES:
        values = np.asarray(mask)
    else:
        values = np.asarray(_convert(mask, "L", path))
    if mask.mode != "L":
        notes.append(("converted_mode", f"{mask.mode} -> L{_alpha_note(mask)}"))
    return values, notes


def _read_raster(read, path: Path, *args):
    """`read(path, *args)` of `raster`, its UnreadableRaster an UnreadableFile."""
    try:
        return read(path, *args)
    except raster.UnreadableRaster as error:
        raise UnreadableFile(str(error)) from error


def _open(path: Path, role: str, max_pixels: int) -> tuple[Image.Image, list[tuple[str, str]]]:
    """Decode `path` fully, EXIF orientation applied -> (PIL image, format/orientation notes);
    UnreadableFile without decoding it where its header declares more than `max_pixels`."""
    try:
        with Image.open(path) as raw:
            _check_pixels(path, role, raw.size, max_pixels)
            raw.load()
            content, orientation = raw.format, raw.getexif().get(0x0112)
            ImageOps.exif_transpose(raw, in_place=True)
            image = raw
    except UnreadableFile:
        raise
    except Exception as error:  # Pillow's format plugins raise many types for broken files
        raise UnreadableFile(
            f"{path_str(path)}: cannot be read as an {role} ({type(error).__name__}: {error}); "
            "replace the file or remove its pair"
        ) from error
    notes = []
    expected = _EXTENSION_FORMATS.get(path.suffix.lower())
    if expected and content not in expected:
        notes.append(("format_mismatch", f"content is {content}, extension is {path.suffix}"))
    if orientation not in (None, 1):
        notes.append(("exif_orientation", f"orientation {orientation}: {_turn(orientation)}"))
    return image, notes


def _check_pixels(path: Path, role: str, size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise UnreadableFile(
            f"{path_str(path)}: the {role} is {width} x {height} pixels, more than the "
            f"{max_pixels:,} pixels of --max-pixels; pass a larger --max-pixels if the file is "
            "meant to be that large (decoding takes about 10 bytes a pixel)"
        )


def declared_pixels(path: Path | None) -> int:
    """The pixels the header of an image file declares, read without decoding it (0 for a
    missing or unreadable file)."""
    try:
        if path is None:
            return 0
        with Image.open(path) as image:
            return image.size[0] * image.size[1]
    except Exception:  # noqa: BLE001 -- whatever it is, reading it will say
        return 0


def _convert(image: Image.Image, mode: str, path: Path) -> Image.Image:
    try:
        return image.convert(mode)
    except ValueError as error:
        raise UnreadableFile(
            f"{path_str(path)}: mode {image.mode} cannot be converted to {mode} ({error}); "
            "re-save the file as 8-bit RGB (image) or L (mask)"
        ) from error


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """HxW numbers -> HxW uint8 by range: 16-bit x255/65535 (65535 -> 255), floats up to 1
    x255, up to 255 as is, larger ranges scaled by their maximum; negatives clip to 0."""
    if values.dtype == np.uint8:
        return values
    top = float(values.max())
    if values.dtype.kind == "u" and values.dtype.itemsize == 2:
        scale = 255 / 65535
    elif values.dtype.kind == "f" and top <= 1.0:
        scale = 255.0
    elif top <= 255:
        scale = 1.0
    else:
        scale = 255 / max(top, 65535)
    return np.clip(np.rint(values.astype(np.float32) * scale), 0, 255).astype(np.uint8)


def _alpha_note(image: Image.Image) -> str:
    if "A" not in image.getbands():
        return ""
    alpha = np.asarray(image.getchannel("A"))
    return f", alpha dropped ({np.mean(alpha < 255):.4f} of pixels were transparent)"


def _turn(orientation: int) -> str:
    """What EXIF orientation `orientation` asks for to show the picture upright."""
    turns = ["mirror left-right", "rotate 180°", "mirror top-bottom", "transpose"]
    turns += ["rotate 90° clockwise", "transverse", "rotate 90° counter-clockwise"]
    return dict(enumerate(turns, start=2)).get(orientation, "not a valid value, ignored")


def path_str(path: Path | str | None) -> str:
    """A path as text any UTF-8 file or terminal takes ("" for None): the bytes of a file name
    that are not UTF-8 shown as \\xNN escapes."""
    return "" if path is None else os.fsencode(path).decode("utf-8", "backslashreplace")


def has_text_name(path: Path) -> bool:
    """Whether `path` is UTF-8 text, as the names a cache stores must be."""
    return path_str(path) == str(path)
