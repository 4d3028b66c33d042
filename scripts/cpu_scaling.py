"""How many cores' worth of work this machine gives N busy processes at once.

A machine can give N busy processes fewer than N cores' worth of work (a CPU quota, shared
cores), which caps embed's readers whatever their number. This runs N processes (N = 1, 2, 4,
... up to the cores) each doing the readers' kind of work (OpenCV on one thread: a 1080p resize
and blur) for a fixed time, and prints the work done per second against one process's: a machine
with N free cores prints ~N.

    python scripts/cpu_scaling.py [SECONDS_PER_STEP]
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time

import cv2
import numpy as np


def _work(seconds: float, start: float, counts, slot: int) -> None:
    cv2.setNumThreads(1)
    image = np.random.default_rng(slot).integers(0, 255, (1080, 1920, 3), np.uint8)
    while time.perf_counter() < start:  # all begin together
        pass
    done, end = 0, start + seconds
    while time.perf_counter() < end:
        small = cv2.resize(image, (1024, 576), interpolation=cv2.INTER_LINEAR)
        cv2.GaussianBlur(small, (5, 5), 1.0)
        done += 1
    counts[slot] = done


def rate(processes: int, seconds: float) -> float:
    """Work units per second, all `processes` together."""
    counts = multiprocessing.Array("l", processes)
    start = time.perf_counter() + 0.5
    workers = [
        multiprocessing.Process(target=_work, args=(seconds, start, counts, slot))
        for slot in range(processes)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(counts) / seconds


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    cores = len(os.sched_getaffinity(0))
    steps = sorted({1, 2, 4, 8, cores // 2, cores} - {0})
    print(f"cpu_count {os.cpu_count()}, usable by this process {cores}")
    one = rate(1, seconds)
    print(f"{1:3d} processes: {one:8.1f} units/s  1.00x")
    for processes in steps[1:]:
        total = rate(processes, seconds)
        print(f"{processes:3d} processes: {total:8.1f} units/s  {total / one:.2f}x")


if __name__ == "__main__":
    main()
