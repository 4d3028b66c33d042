"""report.md as HTML: as a browser shows it (`render`), and as report.html, one file with its
figures inside (`write_html`), to send to someone who will not open a folder.

markdown-it-py renders CommonMark, as GitHub does, with its tables and raw HTML (the
appendix's `<details>`). Names from the data are escaped where they enter the markdown; the
page also forbids scripts and every source but its own inlined figures (`POLICY`), and inlines
only the figures the report wrote, so that no file name or recorded config can run code or
pull a local file into the one file a user sends.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import re
from pathlib import Path
from urllib.parse import unquote

from floodcache.utils.atomic import write_whole

log = logging.getLogger(__name__)

IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
# report.html is meant to be mailed: its figures are shrunk to the page's width (wider is never
# shown) and PNGs to 256 colours, which plots bear.
PAGE_WIDTH = 1100  # px, the body's max-width in STYLE
MAX_FIGURE_WIDTH = PAGE_WIDTH
JPEG_QUALITY = 80
_SOURCE = re.compile(r'<img src="([^"]+)"')
STYLE = """body { max-width: 1100px; margin: 2em auto; padding: 0 1em; font-family: sans-serif;
  color: #111; background: #fff; line-height: 1.45 }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em }
th, td { border: 1px solid #bbb; padding: 0.25em 0.5em }
img { max-width: 100%; height: auto }
pre { background: #f4f4f4; padding: 0.6em; overflow-x: auto }
blockquote { border-left: 4px solid #c00; margin: 1em 0; padding: 0 1em }"""
# No script, frame, font or remote source of any kind: the page needs only its style and the
# figures inlined as data: URLs
POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def render(text: str) -> str:
    """The HTML body of a markdown text (CommonMark, tables, raw HTML kept)."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": True}).enable("table").render(text)


def image_sources(body: str) -> list[str]:
    """Every `<img src>` of rendered HTML, in order."""
    return [unquote(html.unescape(source)) for source in _SOURCE.findall(body)]


def compact(figure: Path) -> bytes:
    """`figure`'s bytes for report.html: at most MAX_FIGURE_WIDTH wide, a PNG in 256 colours,
    a JPEG at JPEG_QUALITY; the file's own bytes where those are smaller. The file is unchanged."""
    from PIL import Image

    original = figure.read_bytes()
    with Image.open(io.BytesIO(original)) as image:
        image.load()
        if image.width > MAX_FIGURE_WIDTH:
            height = round(image.height * MAX_FIGURE_WIDTH / image.width)
            image = image.resize((MAX_FIGURE_WIDTH, height), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        if IMAGE_TYPES[figure.suffix.lower()] == "image/png":
            image.convert("RGB").quantize(256).save(out, "PNG", optimize=True)
        else:
            image.convert("RGB").save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
    smaller = out.getvalue()
    return smaller if len(smaller) < len(original) else original


def write_html(report: Path, figures: list[Path]) -> Path:
    """report.html beside `report` (report.md), each of its `figures` (the files the report
    wrote) inside it as a data: URL. An image that is not one of them is left out."""
    report = Path(report)
    body = render(report.read_text())
    ours = {Path(figure).resolve() for figure in figures}

    def inline(match: re.Match) -> str:
        figure = (report.parent / unquote(html.unescape(match.group(1)))).resolve()
        if figure not in ours or figure.suffix.lower() not in IMAGE_TYPES:
            return '<img title="left out: not a figure of this report"'
        if not figure.is_file():
            raise FileNotFoundError(f"{report} links {figure}, which does not exist")
        kind = IMAGE_TYPES[figure.suffix.lower()]
        data = base64.b64encode(compact(figure)).decode("ascii")
        return f'<img src="data:{kind};base64,{data}"'

    body = _SOURCE.sub(inline, body)
    title = html.escape(report.parent.name)
    page = (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">\n'
        f"<title>floodcache report: {title}</title>\n<style>\n{STYLE}\n</style>\n</head>\n"
        f"<body>\n{body}</body>\n</html>\n"
    )
    path = report.with_suffix(".html")
    write_whole(path, lambda tmp: tmp.write_text(page, encoding="utf-8"))
    return path


def remove_stale_page(report: Path) -> None:
    """Remove the report.html an earlier report wrote beside `report`, which this one (without
    --html) does not replace: it would show the old numbers beside the new report.md. A file
    of that name that floodcache did not write is left alone, with a warning."""
    path = Path(report).with_suffix(".html")
    if not path.is_file():
        return None
    with open(path, encoding="utf-8", errors="replace") as file:
        head = file.read(400)
    if "<title>floodcache report:" not in head:
        log.warning("%s is not a floodcache report: left as it is, beside the new %s", path, report)
        return None
    path.unlink()
    log.info("removed %s from an earlier report (pass --html for a new one)", path)
    return None
