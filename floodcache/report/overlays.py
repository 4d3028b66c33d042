"""The report's pictures of views: the truth and each prediction drawn on the view's image, the
prompt drawn on top, and galleries of such panels with a colour legend, one JPEG each.

Images are hxwx3 uint8 RGB previews (longest side <= 512, from the cache); masks hxw bool at
the same size; prompts in original-image pixels with `scale` = preview pixels per original
pixel.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from matplotlib.patches import Patch

from floodcache.prompts import Prompt
from floodcache.report.figures import plt, save  # pyplot, with the Agg backend set

# RGB 0..255. Right water, false alarm and missed water take the usual green, red and yellow;
# the truth a hue no prediction uses; the prompt's clicks hues no mask uses.
TRUTH = (0, 220, 255)
TRUE_POSITIVE, FALSE_POSITIVE, FALSE_NEGATIVE = (0, 190, 0), (255, 30, 30), (255, 210, 0)
WATER_CLICK, BACKGROUND_CLICK, BOX = (30, 90, 255), (255, 0, 255), (255, 255, 255)
LEGEND = (
    ("true water (truth panel)", TRUTH),
    ("water found", TRUE_POSITIVE),
    ("false alarm", FALSE_POSITIVE),
    ("missed water", FALSE_NEGATIVE),
    ("box prompt", BOX),
    ("water click", WATER_CLICK),
    ("background click", BACKGROUND_CLICK),
)

PANEL_PX = 440  # each image's width: water edges stay visible at this size
GAP_PX = 12  # between panels
DPI = 100
TITLE_IN, LEGEND_IN = 0.45, 0.5  # inches above each row for two lines of titles; the legend
JPEG_QUALITY = 85  # galleries are photographs: JPEG is a fraction of PNG's size


def truth_overlay(image: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The image with the true water tinted and outlined."""
    out = _tint(image, [(truth, TRUTH)], alpha=0.4)
    contours, _ = cv2.findContours(truth.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, TRUTH, _thickness(out))
    return out


def prediction_overlay(image: np.ndarray, prediction: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The image tinted: water found green, false alarm red, missed water yellow."""
    return _tint(
        image,
        [
            (prediction & truth, TRUE_POSITIVE),
            (prediction & ~truth, FALSE_POSITIVE),
            (~prediction & truth, FALSE_NEGATIVE),
        ],
    )


def draw_prompt(image: np.ndarray, prompt: Prompt, scale: float) -> np.ndarray:
    """A copy of `image` with a Prompt drawn so that it shows on any background: the box white
    on black, kept inside the image (a box along the border would be cut in half); clicks as
    filled discs ringed white and black."""
    out = np.ascontiguousarray(image).copy()
    thickness = _thickness(out)
    if prompt.box is not None:
        _draw_box(out, [v * scale for v in prompt.box], thickness)
    points = []
    if prompt.points is not None and prompt.labels is not None:  # both or neither: Prompt
        points = list(zip(prompt.points, prompt.labels, strict=True))
    radius = 3 * thickness
    height, width = out.shape[:2]
    for (x, y), label in points:
        # a click on the border would show as half a disc: moved in by its radius
        center = (
            _inside(x * scale, radius + thickness, width),
            _inside(y * scale, radius + thickness, height),
        )
        cv2.circle(out, center, radius + thickness, (0, 0, 0), -1, cv2.LINE_AA)
        cv2.circle(out, center, radius, (255, 255, 255), -1, cv2.LINE_AA)
        color = WATER_CLICK if label == 1 else BACKGROUND_CLICK
        cv2.circle(out, center, radius - thickness, color, -1, cv2.LINE_AA)
    return out


def _draw_box(out: np.ndarray, box: list[float], thickness: int) -> None:
    """XYXY preview pixels; inset so that both lines lie wholly inside the image."""
    inset = thickness + 1
    height, width = out.shape[:2]
    x0, x1 = (_inside(v, inset, width) for v in (box[0], box[2]))
    y0, y1 = (_inside(v, inset, height) for v in (box[1], box[3]))
    cv2.rectangle(out, (x0, y0), (x1, y1), (0, 0, 0), thickness + 2)
    cv2.rectangle(out, (x0, y0), (x1, y1), BOX, thickness)


def _inside(value: float, margin: int, size: int) -> int:
    """`value` rounded and kept `margin` pixels inside [0, size - 1], where size allows."""
    return int(np.clip(round(value), min(margin, size // 2), max(size - 1 - margin, size // 2)))


def _thickness(image: np.ndarray) -> int:
    return max(2, round(max(image.shape[:2]) / 200))


def _tint(image: np.ndarray, layers, alpha: float = 0.5) -> np.ndarray:
    out = image.astype(np.float32)
    for mask, color in layers:
        out[mask] = (1 - alpha) * out[mask] + alpha * np.array(color, np.float32)
    return out.astype(np.uint8)


def gallery(rows: list[list[tuple[str, np.ndarray]]], path: Path) -> Path:
    """One row per view of (title, hxwx3 image) panels, the colour legend above. Every panel
    is PANEL_PX wide, as tall as its row's image needs; laid out by fixed spacing (no
    tight_layout), so the panels keep their size in pixels."""
    columns = max(len(panels) for panels in rows)
    side, gap = PANEL_PX / DPI, GAP_PX / DPI
    heights = [side * max(im.shape[0] / im.shape[1] for _, im in panels) for panels in rows]
    width = columns * side + (columns - 1) * gap
    height = sum(heights) + len(rows) * TITLE_IN + LEGEND_IN
    fig = plt.figure(figsize=(width, height), facecolor="white")
    top = height - LEGEND_IN
    for panels, row_height in zip(rows, heights, strict=True):
        top -= TITLE_IN + row_height
        for c, (title, image) in enumerate(panels):
            box = (c * (side + gap) / width, top / height, side / width, row_height / height)
            ax = fig.add_axes(box)
            ax.imshow(_fit(image, PANEL_PX))
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    fig.legend(
        handles=[
            Patch(facecolor="#{:02x}{:02x}{:02x}".format(*rgb), edgecolor="black", label=text)
            for text, rgb in LEGEND
        ],
        loc="upper center",
        ncol=len(LEGEND) if columns > 2 else 4,  # two rows above a narrow gallery
        fontsize=10 if columns > 2 else 9,
        frameon=False,
        handlelength=1.2,
    )
    return save(fig, path, dpi=DPI, facecolor="white", pil_kwargs={"quality": JPEG_QUALITY})


def _fit(image: np.ndarray, width: int) -> np.ndarray:
    """`image` area-shrunk to at most `width` pixels wide."""
    scale = width / image.shape[1]
    if scale >= 1:
        return image
    size = (width, max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)
