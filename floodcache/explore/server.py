"""The explorer's HTTP side: the standard library's ThreadingHTTPServer, a handful of routes and
the page's files shipped in `static/` (no framework, no CDN, no build step).

    GET  /                    the page (static/index.html)
    GET  /static/NAME         one of the page's files, by a name listed in STATIC
    GET  /api/summary         models and their colours, prompts, whether weights are random
    GET  /api/table           every evaluated view with each model x prompt IoU and changes
    GET  /api/view/ROW        one view: sizes, ground truth, per prompt the evaluated prompt,
                              metrics and masks
    GET  /api/image/ROW       the view's preview, JPEG as the cache stores it
    POST /api/answer          {"row", "points", "labels", "box"}: every decoder's mask and IoU

A request is answered in a thread of its own; a bad one gets a 4xx with a JSON message and the
server keeps serving.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from floodcache.explore.checks import BadRequest, read_json, user_prompt, view_row
from floodcache.explore.explorer import Explorer

log = logging.getLogger(__name__)
# The page's files and their types: only these names are served, so a request is never a path
STATIC = {
    "index.html": "text/html; charset=utf-8",
    "explore.js": "text/javascript; charset=utf-8",
    "explore.css": "text/css; charset=utf-8",
}


def static_file(name: str) -> bytes:
    """A file of the page as installed with the package."""
    return resources.files("floodcache.explore").joinpath("static").joinpath(name).read_bytes()


class ExploreServer(ThreadingHTTPServer):
    """ThreadingHTTPServer holding the `Explorer` its handlers answer from."""

    daemon_threads = True  # a browser's open connection does not hold Ctrl-C up

    def __init__(self, address: tuple[str, int], explorer: Explorer):
        super().__init__(address, ExploreHandler)
        self.explorer = explorer
        self.pages = {name: static_file(name) for name in STATIC}

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = host if isinstance(host, str) else host.decode()  # a str for an IP socket
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"


class ExploreHandler(BaseHTTPRequestHandler):
    server: ExploreServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self._answer(self._get)

    def do_POST(self) -> None:  # noqa: N802
        self._answer(self._post)

    def _get(self) -> tuple[int, str, bytes]:
        path = self.path.split("?", 1)[0]
        explorer = self.server.explorer
        if path in ("/", "/index.html"):
            return self._static("index.html")
        if path.startswith("/static/"):
            return self._static(path.removeprefix("/static/"))
        if path == "/api/summary":
            return _json(explorer.summary())
        if path == "/api/table":
            return _json(explorer.table_rows())
        if path.startswith("/api/view/"):
            return _json(explorer.view(view_row(path.removeprefix("/api/view/"), explorer.rows)))
        if path.startswith("/api/image/"):
            row = view_row(path.removeprefix("/api/image/"), explorer.rows)
            return HTTPStatus.OK, "image/jpeg", explorer.image_jpeg(row)
        raise BadRequest(f"no page at {path[:80]}: open / for the explorer", 404)

    def _post(self) -> tuple[int, str, bytes]:
        if self.path != "/api/answer":
            raise BadRequest(f"no POST at {self.path[:80]}: prompts go to /api/answer", 404)
        explorer = self.server.explorer
        asked = read_json(self._body(explorer.config.max_body))
        row = view_row(str(asked.get("row")), explorer.rows)
        height, width = (int(s) for s in explorer.cache.column("original_size")[row])
        prompt = user_prompt(asked, (height, width), explorer.config.max_points)
        return _json(explorer.answer(row, prompt))

    def _body(self, limit: int) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise BadRequest("a POST needs a Content-Length", 411)
        if int(length) > limit:
            raise BadRequest(f"a body of {length} bytes: at most {limit} are read", 413)
        return self.rfile.read(int(length))

    def _static(self, name: str) -> tuple[int, str, bytes]:
        if name not in STATIC:
            raise BadRequest(f"no file {name[:80]!r}: the page has {', '.join(STATIC)}", 404)
        return HTTPStatus.OK, STATIC[name], self.server.pages[name]

    def _answer(self, route) -> None:
        try:
            status, kind, body = route()
        except BadRequest as err:
            status, kind, body = _json({"error": str(err)}, err.status)
            if err.status in (HTTPStatus.LENGTH_REQUIRED, HTTPStatus.REQUEST_ENTITY_TOO_LARGE):
                self.close_connection = True  # the unread body must not be taken for a request
        except Exception as err:  # a damaged view, a bug: say so, and keep serving
            log.exception("explore: %s failed", self.path[:80])
            status, kind, body = _json({"error": f"{type(err).__name__}: {err}"}, 500)
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("explore: " + format, *args)


def _json(value, status: int = HTTPStatus.OK) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(value).encode()
