"""`explore`: open the cache, the evaluation and the decoders, then serve the page until Ctrl-C."""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable

from floodcache.explore.config import ExploreConfig
from floodcache.explore.explorer import Explorer
from floodcache.explore.server import ExploreServer

log = logging.getLogger(__name__)


def open_explorer(config: ExploreConfig) -> ExploreServer:
    """The server, bound and ready to serve (`serve_forever`); the caller closes it with
    `close_explorer`. Refuses what `train`/`evaluate`/`report` refuse, with their messages."""
    explorer = Explorer(config)
    try:
        return ExploreServer((config.host, config.port), explorer)
    except OSError as err:
        explorer.close()
        if err.errno == errno.EADDRINUSE:
            raise ValueError(
                f"port {config.port} on {config.host} is taken (another explorer?): pass "
                "another --port, or --port 0 for a free one",
            ) from err
        raise


def close_explorer(server: ExploreServer) -> None:
    server.server_close()
    server.explorer.close()


def run_explore(config: ExploreConfig, announce: Callable[[str], None]) -> None:
    """Serve until Ctrl-C (or SIGTERM, which the command turns into it); `announce` is told
    the address to open. Returns normally when stopped: nothing was being written."""
    server = open_explorer(config)
    try:
        announce(server.url)
        server.serve_forever()
    except KeyboardInterrupt:
        log.debug("explore: stopped")
    finally:
        close_explorer(server)
