"""report.html: a size fit to mail, and never left stale beside a newer report.md."""

from __future__ import annotations

import base64
import io
import logging

import numpy as np
from PIL import Image

from floodcache.report import html


def _report(folder, figure_name: str, image: Image.Image):
    (folder / "figures").mkdir()
    image.save(folder / "figures" / figure_name)
    report = folder / "report.md"
    report.write_text(f"# A report\n\n![a figure](figures/{figure_name})\n")
    return report


def test_report_html_holds_its_figures_shrunk_to_the_page(tmp_path):
    """A photo-like figure twice the page's width is inlined at the page's width, smaller;
    the figure file itself is untouched."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (1100, 2 * html.PAGE_WIDTH, 3), dtype=np.uint8)
    report = _report(tmp_path, "views.jpg", Image.fromarray(pixels))
    figure = tmp_path / "figures" / "views.jpg"
    before = figure.read_bytes()
    page = html.write_html(report).read_text()
    (source,) = html.image_sources(page)
    inlined = base64.b64decode(source.split("base64,")[1])
    with Image.open(io.BytesIO(inlined)) as shown:
        assert shown.width == html.PAGE_WIDTH and shown.height == 550
    assert len(inlined) < len(before) / 2 and figure.read_bytes() == before


def test_a_report_without_html_removes_the_stale_page_but_not_a_foreign_file(tmp_path, caplog):
    report = _report(tmp_path, "plot.png", Image.new("RGB", (200, 100), "white"))
    page = html.write_html(report)
    assert page.is_file()
    html.remove_stale_page(report)  # the next report, without --html
    assert not page.exists()
    page.write_text("<html><title>my own notes</title></html>")
    with caplog.at_level(logging.WARNING):
        html.remove_stale_page(report)
    assert page.read_text().startswith("<html><title>my own")  # never a user's file
    assert "not a floodcache report" in caplog.text
