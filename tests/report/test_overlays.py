"""Pictures of views: prompts that show wherever they are, galleries with panels large enough
to see water edges and a legend of their colours."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from floodcache.prompts import Prompt
from floodcache.report import overlays

GREY = np.full((300, 400, 3), 90, np.uint8)


def _pixels_of(image: np.ndarray, rgb) -> np.ndarray:
    return np.all(image == np.array(rgb, np.uint8), axis=-1)


def test_a_box_along_the_border_is_drawn_inside_the_image():
    drawn = overlays.draw_prompt(GREY, Prompt(None, None, [0, 0, 399, 299]), scale=1.0)
    white = _pixels_of(drawn, overlays.BOX)
    for side in (white[:, :10], white[:, -10:], white[:10, :], white[-10:, :]):
        assert side.sum() > 200  # the whole line, on each side, not half of it off the image
    assert not white[0].any() and not white[-1].any()  # inset: black on the outside


def test_a_click_on_the_edge_shows_whole_and_outlined():
    def click_pixels(x, y, label):
        prompt = Prompt([[x, y]], [label], None)
        drawn = overlays.draw_prompt(GREY, prompt, scale=1.0)
        color = overlays.WATER_CLICK if label == 1 else overlays.BACKGROUND_CLICK
        return drawn, _pixels_of(drawn, color).sum()

    middle, inside = click_pixels(200, 150, 1)
    corner, on_edge = click_pixels(0, 299, 1)
    assert inside > 20 and on_edge == inside  # moved in, not cut
    assert _pixels_of(middle, (255, 255, 255)).any() and _pixels_of(middle, (0, 0, 0)).any()
    assert click_pixels(200, 150, 0)[1] == inside  # background clicks: their own colour


def test_a_prompt_is_drawn_at_the_previews_scale():
    drawn = overlays.draw_prompt(GREY, Prompt([[800, 600]], [1], None), scale=0.25)
    ys, xs = np.nonzero(_pixels_of(drawn, overlays.WATER_CLICK))
    assert abs(xs.mean() - 200) < 1 and abs(ys.mean() - 150) < 1


@pytest.fixture
def captured(monkeypatch):
    """The figures a gallery closes, to read what it drew."""
    figures = []
    close = overlays.plt.close
    monkeypatch.setattr(overlays.plt, "close", lambda fig: (figures.append(fig), close(fig)))
    return figures


def test_gallery_panels_are_at_least_400_pixels_wide_with_a_legend(tmp_path, captured):
    landscape, portrait = GREY, np.full((500, 300, 3), 90, np.uint8)
    rows = [[("a", landscape)] * 3, [("b", portrait)] * 3]
    path = overlays.gallery(rows, tmp_path / "g.jpg")
    with Image.open(path) as image:
        assert image.format == "JPEG" and image.mode == "RGB"
        width, height = image.size
    assert width >= 3 * 400
    assert height >= 400 * 300 / 400 + 400 * 500 / 300  # each row as tall as its image needs
    (figure,) = captured
    axes = [ax for ax in figure.axes if ax.images]
    for ax in axes:
        box = ax.get_window_extent()
        assert box.width >= 400 - 1
    labels = [text.get_text() for text in figure.legends[0].get_texts()]
    assert labels == [text for text, _ in overlays.LEGEND]


def test_the_truth_is_tinted_and_outlined_in_its_own_colour():
    truth = np.zeros((300, 400), bool)
    truth[100:200, 100:300] = True
    drawn = overlays.truth_overlay(GREY, truth)
    outline = _pixels_of(drawn, overlays.TRUTH)
    assert outline[100:200, 100:300].any() and not outline[:90].any()
    assert (drawn[150, 200] != GREY[150, 200]).any() and (drawn[20, 20] == GREY[20, 20]).all()
    colours = [rgb for _, rgb in overlays.LEGEND]
    assert len(set(colours)) == len(colours)  # no two meanings share a colour
