"""An explorer serving finetuned_evaluation (pretrained and the `mix` run, val split), in a
thread of the test process, on a free port of this machine."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from floodcache.explore.config import ExploreConfig
from tests.helpers import serving


@pytest.fixture(scope="package")
def explore_config(finetuned_evaluation) -> ExploreConfig:
    evaluate_config, _ = finetuned_evaluation
    return ExploreConfig(evaluate_config.cache, evaluate_config.out, port=0, device="cpu")


@pytest.fixture(scope="package")
def explorer_url(explore_config) -> Iterator[str]:
    with serving(explore_config) as url:
        yield url
