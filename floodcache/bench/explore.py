"""`bench`'s explore row: how long the explorer makes a user wait for a prompt's answer, both
decoders (the cache's pretrained one and a second of the same size, as a fine-tuned run is)
with their masks at preview size and IoUs, on the cached views (`explore.answers`).

Each view answers one prompt untimed first: its embedding is read once when the user opens it,
not at every click. Then `prompts` prompts, cycling over the views and over the kinds a user
makes (one point, a few points of both labels, a box, a box with a point), each timed alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from floodcache.bench.table import PeakMemory, Row
from floodcache.cache.reader import Cache
from floodcache.explore.answers import PromptAnswers
from floodcache.prompts import Prompt
from floodcache.train.runs import DecoderModel, pretrained

PROMPTS = 100  # timed prompts: enough for a 95th percentile


def explore_row(
    cache_path: Path,
    device: torch.device,
    prompts: int = PROMPTS,
    clock: Callable[[], float] = time.perf_counter,
) -> Row:
    """Time `prompts` answers on the views of the cache; the note gives the median and the
    95th percentile in milliseconds. views/s: prompts answered a second."""
    with Cache.open(cache_path) as cache, PeakMemory(device) as peak:
        answers = PromptAnswers(cache, _two_decoders(cache), COLORS, str(device))
        rows = cache.rows()
        rng = np.random.default_rng(0)
        for row in rows:
            answers.answer(int(row), _prompt(cache, int(row), 0, rng))
        seconds = []
        for i in range(prompts):
            row = int(rows[i % len(rows)])
            prompt = _prompt(cache, row, i, rng)
            start = clock()
            answers.answer(row, prompt)
            seconds.append(clock() - start)
    median, p95 = (1000 * float(q) for q in np.percentile(seconds, [50, 95]))
    note = (
        f"per prompt: median {median:.0f} ms, 95th percentile {p95:.0f} ms ({prompts} prompts "
        f"on {len(rows)} views; 2 decoders, masks at preview size)"
    )
    return Row("explore", "fp32", 1, prompts, sum(seconds), peak.megabytes(), note=note)


COLORS = {"pretrained": (255, 150, 0), "fine-tuned": (235, 40, 200)}


def _two_decoders(cache: Cache) -> list[DecoderModel]:
    """The cache's decoder and a changed copy of it: a fine-tuned run's shape and cost."""
    base = pretrained(cache)
    changed = {name: value * np.float32(1.01) for name, value in base.weights.items()}
    return [base, DecoderModel("fine-tuned", changed, "bench")]


def _prompt(cache: Cache, row: int, i: int, rng: np.random.Generator) -> Prompt:
    """The i-th kind of prompt a user makes, at random places of the view (original pixels)."""
    height, width = (float(s) for s in cache.column("original_size")[row])

    def points(count: int) -> np.ndarray:
        return rng.uniform((0, 0), (width, height), (count, 2))

    kind = i % 4
    if kind == 0:
        return Prompt(points=points(1), labels=np.array([1]), box=None)
    if kind == 1:
        return Prompt(points=points(3), labels=np.array([1, 0, 1]), box=None)
    corners = np.sort(points(2), axis=0).reshape(4)  # [[x0, y0], [x1, y1]] -> XYXY
    if kind == 2:
        return Prompt(points=None, labels=None, box=corners)
    return Prompt(points=points(1), labels=np.array([1]), box=corners)
