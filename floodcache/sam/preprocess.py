"""SAM-exact preprocessing on the host: the resize to SAM's input and the decoder's low-res
training target (`device_resize` does both on the device).

Preprocessing follows `SamPredictor.set_image` for numpy input exactly: segment-anything's
`ResizeLongestSide.apply_image` (PIL resize of the uint8 image, longest side 1024), then
`Sam.preprocess` (normalise on the 0..255 scale, zero-pad bottom/right to 1024x1024).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

IMAGE_SIZE = 1024  # SAM's encoder input side
LOWRES_SIZE = 256  # the mask decoder's low-res logits side, covering the padded 1024 square


def resize_to_input(image: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB -> hxwx3 uint8, longest side 1024, exactly as SamPredictor.set_image.

    An image already at that size (every augmented view: `views.view_base`) comes back as
    it is: PIL would only copy it."""
    if input_size(image.shape[:2]) == image.shape[:2]:
        return image
    # segment-anything's own resize; its module imports torchvision, so only when resizing
    from segment_anything.utils.transforms import ResizeLongestSide

    return ResizeLongestSide(IMAGE_SIZE).apply_image(image)


def input_size(original_size: tuple[int, int]) -> tuple[int, int]:
    """(h, w) of the resized image inside the padded 1024 square, for an (H, W) original:
    the longest side made 1024, each side rounded half up, as
    `ResizeLongestSide.get_preprocess_shape` does (tests/sam/test_preprocess.py)."""
    height, width = (int(side) for side in original_size)
    scale = IMAGE_SIZE / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def lowres_target(mask: np.ndarray) -> np.ndarray:
    """HxW {0,1} mask -> 256x256 uint8 {0,1} target in the decoder's padded low-res frame.

    Built like the image: resize longest side to 1024 (PIL bilinear, as ResizeLongestSide
    resizes each channel of an image), pad bottom/right to 1024, then 4x4 area-average down to
    256 and threshold at one half. The averages are integer sums of the grey values; a block
    at exactly half is decided by the float32 mean of values/255 that the targets of every
    cache so far came from (its rounding sends some below one half), so that integer sums
    serve every other block and existing caches keep their targets.
    """
    h, w = input_size(mask.shape[:2])
    grey = Image.fromarray((mask * 255).astype(np.uint8), mode="L")
    padded = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    padded[:h, :w] = np.asarray(grey.resize((w, h), Image.Resampling.BILINEAR))
    factor = IMAGE_SIZE // LOWRES_SIZE
    rows = padded[0::factor].astype(np.uint16)
    for offset in range(1, factor):
        rows += padded[offset::factor]
    sums = rows[:, 0::factor].copy()
    for offset in range(1, factor):
        sums += rows[:, offset::factor]
    half = factor * factor * 255 // 2
    target = sums > half
    ties = np.nonzero(sums == half)
    if len(ties[0]):
        blocks = padded.reshape(LOWRES_SIZE, factor, LOWRES_SIZE, factor)[ties[0], :, ties[1]]
        # Laid out as the whole frame's blocks are, so that the mean adds up in the same order.
        values = np.ascontiguousarray(blocks.transpose(1, 0, 2))[None] / 255.0
        target[ties] = values.astype(np.float32).mean(axis=(1, 3))[0] >= 0.5
    return target.astype(np.uint8)


def valid_lowres(input_size: tuple[int, int]) -> tuple[int, int]:
    """(rows, cols) of the 256x256 low-res frame that cover the image, not the padding."""
    scale = IMAGE_SIZE // LOWRES_SIZE
    return -(-int(input_size[0]) // scale), -(-int(input_size[1]) // scale)
