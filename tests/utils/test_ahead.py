"""Work submitted ahead and taken back in order (floodcache/utils/ahead.py)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from floodcache.utils.ahead import submit_ahead


def test_results_come_in_order_with_at_most_ahead_more_submitted():
    submitted = []

    def work(item: int) -> int:
        return item * item

    class CountingPool(ThreadPoolExecutor):
        def submit(self, fn, *args):
            submitted.append(args[0])
            return super().submit(fn, *args)

    with CountingPool(3) as pool:
        taken = []
        for item, future in submit_ahead(pool, work, range(10), ahead=2):
            assert len(submitted) <= item + 1 + 2  # never more than `ahead` past this one
            taken.append((item, future.result()))
    assert taken == [(i, i * i) for i in range(10)]
