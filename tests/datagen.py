"""Writers of tiny image and mask files with the defects real data sets have.

Each writer saves through Pillow with an explicit format, so that the content can differ from
the extension on purpose (a JPEG named .png, a WebP named .jpg).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def picture(seed: int, height: int = 12, width: int = 16) -> np.ndarray:
    """HxWx3 uint8 RGB of flat 4x4 blocks, different for every seed (so never a duplicate)."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, ((height + 3) // 4, (width + 3) // 4, 3), dtype=np.uint8)
    return np.kron(blocks, np.ones((4, 4, 1), np.uint8))[:height, :width]


def water(seed: int, height: int = 12, width: int = 16) -> np.ndarray:
    """HxW uint8 {0, 255} mask of 2x2 blocks with some water and some land, unique per seed."""
    rng = np.random.default_rng(seed + 10_000)
    blocks = rng.integers(0, 2, ((height + 1) // 2, (width + 1) // 2), dtype=np.uint8)
    blocks.flat[:2] = (0, 1)
    return (np.kron(blocks, np.ones((2, 2), np.uint8)) * 255)[:height, :width]


def save(path: Path, pixels: np.ndarray | Image.Image, fmt: str, **options) -> Path:
    """Write `pixels` in format `fmt` (a Pillow format name) whatever the extension of `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    image.save(path, format=fmt, **options)
    return path


def save_rotated_jpeg(path: Path, pixels: np.ndarray, orientation: int) -> Path:
    """A JPEG of `pixels` as stored, with EXIF orientation `orientation` (0x0112) set."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return save(path, pixels, "JPEG", quality=95, exif=exif)


def save_truncated_jpeg(path: Path, pixels: np.ndarray) -> Path:
    """A JPEG cut after half of its bytes, as an interrupted download leaves it."""
    save(path, pixels, "JPEG", quality=95)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def save_text(path: Path, text: str = "404 Not Found\n") -> Path:
    """A text file (e.g. an HTML error page saved under an image name)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def write_zoo(root: Path) -> tuple[Path, Path]:
    """images/ and masks/ folders (no metadata.csv) with one pair per defect, named after it:
    every problem code of floodcache.data but the metadata ones (see tests/test_data.py)."""
    images, masks = root / "images", root / "masks"
    seeds = iter(range(1000))

    def pair(name, image=None, mask=None, ext=".png", fmt="PNG", **options):
        image = picture(next(seeds)) if image is None else image
        save(images / f"{name}{ext}", image, fmt, **options)
        save(masks / f"{name}.png", water(next(seeds)) if mask is None else mask, "PNG")

    pair("ok")
    pair("jpeg_as_png", fmt="JPEG")
    pair("webp_as_jpg", ext=".jpg", fmt="WEBP", lossless=True)
    save_rotated_jpeg(images / "exif.jpg", picture(1001), orientation=6)
    save(masks / "exif.png", water(1001, 16, 12), "PNG")  # fits the upright 12x16 picture
    pair("rgba", Image.fromarray(picture(1002)).convert("RGBA"))
    pair("palette", Image.fromarray(picture(1003)).convert("P"))
    pair("cmyk", Image.fromarray(picture(1004)).convert("CMYK"), ext=".jpg", fmt="JPEG")
    pair("sixteen", (picture(1005)[:, :, 0].astype(np.uint16) * 257))
    pair("grey", picture(1006)[:, :, 1])
    pair("grey_mask", mask=np.where(water(1007) > 0, 200, 90).astype(np.uint8))
    pair("rgb_mask", mask=np.repeat(water(1008)[:, :, None], 3, axis=2))
    pair("empty", mask=np.zeros((12, 16), np.uint8))
    pair("full", mask=np.full((12, 16), 255, np.uint8))
    pair("zero_byte")
    (images / "zero_byte.png").write_bytes(b"")
    save_truncated_jpeg(images / "truncated.jpg", picture(1009, 64, 64))
    save(masks / "truncated.png", water(1009, 64, 64), "PNG")
    save_text(images / "text.jpg")
    save(masks / "text.png", water(1010), "PNG")
    save(images / "bad_mask.png", picture(1011), "PNG")
    save_text(masks / "bad_mask.png")
    save(images / "no_mask.png", picture(1012), "PNG")
    save(masks / "no_image.png", water(1013), "PNG")
    pair("small_mask", mask=water(1014, 6, 8))
    pair("turned_mask", mask=water(1015, 16, 12))
    pair("swap_a", picture(1016, 12, 16), mask=water(1016, 10, 20))
    pair("swap_b", picture(1017, 10, 20), mask=water(1017, 12, 16))
    pair("dup_a", picture(1018))
    pair("dup_b", picture(1018))
    pair("copy_a", mask=water(1019))
    pair("copy_b", mask=water(1019))
    return images, masks
