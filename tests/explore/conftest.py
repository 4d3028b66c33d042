"""An explorer serving finetuned_evaluation (pretrained and the `mix` run, val split), in a
thread of the test process, on a free port of this machine."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from floodcache.explore.config import ExploreConfig
from floodcache.explore.run import close_explorer, open_explorer


@contextmanager
def serving(config: ExploreConfig) -> Iterator[str]:
    """The URL of an explorer serving `config` until the block ends."""
    server = open_explorer(config)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.url
    finally:
        server.shutdown()
        thread.join()
        close_explorer(server)


@pytest.fixture(scope="package")
def explore_config(finetuned_evaluation) -> ExploreConfig:
    evaluate_config, _ = finetuned_evaluation
    return ExploreConfig(evaluate_config.cache, evaluate_config.out, port=0, device="cpu")


@pytest.fixture(scope="package")
def explorer_url(explore_config) -> Iterator[str]:
    with serving(explore_config) as url:
        yield url
