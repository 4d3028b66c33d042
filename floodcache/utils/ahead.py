"""Work submitted ahead to a thread pool and taken back in order: the next items are being
read while the caller uses the first."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from typing import TypeVar

Item = TypeVar("Item")


def submit_ahead(
    pool: Executor, work: Callable[[Item], object], items: Iterable[Item], ahead: int
) -> Iterator[tuple[Item, Future]]:
    """(item, future of `work(item)`) in the items' order, with up to `ahead` more submitted
    meanwhile."""
    pending: deque[tuple[Item, Future]] = deque()
    for item in items:
        pending.append((item, pool.submit(work, item)))
        if len(pending) > ahead:
            yield pending.popleft()
    yield from pending
