"""`embed`'s readers: worker processes that read, augment and prepare each view for the encoder.

A reader's unit of work is one image's views within a batch (they share one decode); a free
reader takes the next unit, and the units are joined in order into the encoder's batches.
Their pixels come back in slots of memory shared with forked readers (`Slots`), page-locked
for CUDA, else through pipes.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

from floodcache.data.pairs import Pair, load_pair
from floodcache.data.views import ViewKey, make_view, view_base
from floodcache.embed.background import ReaderDied, background_processes
from floodcache.embed.config import EmbedConfig
from floodcache.embed.slots import SLOT_BYTES, Slots, page_locked
from floodcache.sam.preprocess import input_size, lowres_target, resize_to_input

log = logging.getLogger(__name__)

MAX_WORKERS = 16  # enough to feed the fastest GPU encoder; more only compete for cores


def described(workers: int) -> str:
    """ "one reader process", "15 reader processes": for logs and bench's notes."""
    return "one reader process" if workers == 1 else f"{workers} reader processes"


def default_workers() -> int:
    """Reader processes when not told: one per CPU core but the main process's, at most 16."""
    return max(1, min(MAX_WORKERS, (os.cpu_count() or 2) - 1))


PREVIEW_SIDE = 512  # longest side of the JPEG kept per view for report galleries


class ViewDataset:
    """Pending views -> dicts of a view's encoder input (`prepare_view`) and every cache field
    but the embedding."""

    def __init__(self, views: list[ViewKey], pairs: dict[str, Pair], config: EmbedConfig):
        self.views, self.pairs = views, pairs
        self.seed, self.on_mismatch, self.resize = config.seed, config.on_mismatch, config.resize
        self.max_pixels = config.max_pixels
        self.reading = config.raster
        self.loaded: tuple[str, np.ndarray, np.ndarray] | None = None  # (image_id, image, mask)
        self.made: dict[str, Any] = {}  # arrays made once from it (`_once`)

    def __len__(self) -> int:
        return len(self.views)

    def __getitem__(self, index: int) -> dict:
        key = self.views[index]
        pair = self.pairs[key.image_id]
        image, mask = self.load(key.image_id)
        resized = None
        if key.view:
            image, mask = make_view(
                image, mask, self.seed, key.image_id, key.view, self.view_base()
            )
        elif self.resize == "pil":
            resized = self.resized()
        return prepare_view(image, mask, self.resize, resized) | {
            "image_id": key.image_id,
            "view": key.view,
            "split": key.split,
            "image_file": str(pair.image_path),
            "mask_file": str(pair.mask_path),
        }

    def load(self, image_id: str) -> tuple[np.ndarray, np.ndarray]:
        """An image's (HxWx3 uint8 RGB, HxW uint8 {0,1}), decoded once for its consecutive views.

        A batch holds an image's views one after the other, and decoding is about a quarter
        of a reader's time on 1080p photos. The arrays are made read-only because every view
        shares them: anything that tried to write into them would fail loudly.
        """
        if self.loaded is None or self.loaded[0] != image_id:
            image, mask = load_pair(
                self.pairs[image_id], self.on_mismatch, self.max_pixels, self.reading
            )
            image.flags.writeable = mask.flags.writeable = False
            self.loaded, self.made = (image_id, image, mask), {}
        return self.loaded[1], self.loaded[2]

    def resized(self) -> np.ndarray:
        """The loaded image resized to SAM's input (`preprocess.resize_to_input`), made once: it
        is view 0's input and its augmented views' base."""
        assert self.loaded is not None, "load() comes first"
        image = self.loaded[1]
        return self._once("resized", lambda: resize_to_input(image))

    def view_base(self) -> tuple[np.ndarray, np.ndarray]:
        """The loaded image's `views.view_base`, made once for all its views."""
        assert self.loaded is not None, "load() comes first"
        _, image, mask = self.loaded
        return self._once("base", lambda: view_base(image, mask, self.resized()))

    def _once(self, name: str, make: Callable[[], Any]) -> Any:
        """`make()`'s array or arrays, made read-only once for the loaded image's views."""
        if name not in self.made:
            made = make()
            for array in made if isinstance(made, tuple) else (made,):
                array.flags.writeable = False
            self.made[name] = made
        return self.made[name]


def prepare_view(
    image: np.ndarray, mask: np.ndarray, resize: str = "pil", resized: np.ndarray | None = None
) -> dict:
    """A view's SAM input and metric fields from its HxWx3 uint8 image and HxW {0,1} mask.

    The input is the "resized" image (`resized` if already made) and its "lowres_mask"
    target; with resize="torch" it is the view's "image" and "mask" as they are, resized on
    the device (`device_resize`).
    """
    if resize == "torch":
        pixels = {"image": image, "mask": np.ascontiguousarray(mask, np.uint8)}
    else:
        pixels = {
            "resized": resize_to_input(image) if resized is None else resized,
            "lowres_mask": lowres_target(mask),
        }
    preview = _preview(image)
    ok_mask, png = cv2.imencode(".png", mask.astype(np.uint8))
    ok_jpeg, jpeg = cv2.imencode(".jpg", preview[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok_mask and ok_jpeg, "OpenCV failed to encode an in-memory image"
    return pixels | {
        "mask_png": png.ravel(),
        "image_jpeg": jpeg.ravel(),
        "original_size": np.array(image.shape[:2], np.int32),
        "input_size": np.array(input_size(image.shape[:2]), np.int32),
        "water_fraction": np.float32(np.count_nonzero(mask) / mask.size),  # mask.mean(), {0,1}
    }


def _preview(image: np.ndarray) -> np.ndarray:
    """`image` with its longest side at most PREVIEW_SIDE, area-averaged: halved (a fast case
    of OpenCV's area resize) while at least twice that, then resized: a fraction of one area
    resize's time, a grey level or so apart on average."""
    while max(image.shape[:2]) >= 2 * PREVIEW_SIDE:
        half = (image.shape[1] // 2, image.shape[0] // 2)
        image = cv2.resize(image, half, interpolation=cv2.INTER_AREA)
    scale = PREVIEW_SIDE / max(image.shape[:2])
    if scale >= 1:
        return image
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


FORKED_READERS = sys.platform == "linux"  # as `background_processes` starts them


HELD_BATCHES = 2  # a borrowed batch's pixels stay as they are until this many more are asked


AHEAD_PER_READER = 6  # views a reader may have read beyond the batches being held and joined


_reader: tuple[ViewDataset, Slots | None] | None = None  # in a reader


def _start_reader(dataset: ViewDataset, slots: Slots | None) -> None:
    global _reader
    torch.set_num_threads(1)  # as a DataLoader's workers: one thread per reader
    _reader = (dataset, slots)


def _read_unit(indices: list[int], slots: list[int] | None) -> tuple[list[dict], float, float]:
    """In a reader: views `indices` (one image's, decoded once), each one's pixels put in its
    slot where slots are given (`Slots.put`); and the wall and CPU seconds that took."""
    wall, cpu = time.perf_counter(), time.thread_time()
    assert _reader is not None, "set by the reader's initializer"
    dataset, shared = _reader
    views = [dataset[index] for index in indices]
    for view, slot in zip(views, slots or [], strict=False):
        assert shared is not None, "slots are given only to readers with shared memory"
        shared.put(view, slot)
    return views, time.perf_counter() - wall, time.thread_time() - cpu


@dataclass
class ReaderTimes:
    """The reader processes' work, for embed's log: the wall and CPU seconds spent on their
    units (less CPU than wall: readers waited for a core)."""

    wall: float = 0.0
    cpu: float = 0.0

    def __sub__(self, earlier: ReaderTimes) -> ReaderTimes:
        return ReaderTimes(self.wall - earlier.wall, self.cpu - earlier.cpu)

    def line(self, workers: int, seconds: float) -> str:
        if not workers:
            return "views read in this process"
        busy = self.wall / (workers * seconds) if seconds else 0.0
        who = "the reader was" if workers == 1 else f"the {workers} readers were"
        return (
            f"{who} at work {busy:.0%} of the time, on a core "
            f"{self.cpu / max(self.wall, 1e-9):.0%} of that"
        )


@dataclass(frozen=True)
class Handover:
    """How the readers hand their batches over (see `read_batches`): borrowed in place,
    from page-locked memory, their times counted into `times`."""

    borrow: bool = False
    pin: bool = False
    times: ReaderTimes | None = None


def read_batches(
    batches: list[list[ViewKey]],
    pairs: dict[str, Pair],
    config: EmbedConfig,
    workers: int,
    handover: Handover = Handover(),
) -> Iterator[list[dict]]:
    """Each batch of views read, augmented and prepared (`ViewDataset`) by `workers` processes
    (none: in this one).

    A reader's unit of work is one image's views within a batch (they share one decode); a
    free reader takes the next unit, whichever reader was slow with the last, and the units
    are joined in order into the batches asked. Pixels come back in slots of memory shared
    with the forked readers (else pickled through pipes). With `handover.borrow`, a batch's
    arrays read those slots in place, and stay as they are only until `HELD_BATCHES` more
    batches are asked for; `pin` makes the slots page-locked for CUDA, so that copies to the GPU go
    straight from them without the host's help. OpenCV runs one thread per reader: 15
    readers with one OpenCV thread per core each would fight over the cores.
    """
    views = [key for batch in batches for key in batch]
    if not views:  # every view is in a part already: a rerun that only assembles the cache
        return
    dataset = ViewDataset(views, pairs, config)
    if not workers:
        for batch in _units_by_batch(batches):
            yield [dataset[index] for unit in batch for index in unit]
        return
    largest = max(len(batch) for batch in batches)
    count = (HELD_BATCHES + 1) * largest + AHEAD_PER_READER * workers
    slots = Slots.make(count, SLOT_BYTES[config.resize]) if FORKED_READERS else None
    if not slots:
        log.info("readers are not forked here: they send their views through pipes")
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # before the readers start, which inherit it (set in a reader, it hangs)
    try:
        pool = background_processes(workers, _start_reader, (dataset, slots))
    finally:
        cv2.setNumThreads(threads)
    try:
        with page_locked(slots.block if slots and handover.pin else None):
            units = _units_by_batch(batches)
            times = handover.times or ReaderTimes()
            yield from _joined(pool, workers, units, slots, handover.borrow, times)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _units_by_batch(batches: list[list[ViewKey]]) -> list[list[list[int]]]:
    """For each batch, its units: the indices (into all the batches' views) of each image's
    views in it."""
    units: list[list[list[int]]] = []
    start = 0
    for batch in batches:
        units.append([])
        for _, same_image in itertools.groupby(batch, key=lambda key: key.image_id):
            size = len(list(same_image))
            units[-1].append(list(range(start, start + size)))
            start += size
    return units


def _joined(
    pool: ProcessPoolExecutor,
    workers: int,
    batches: list[list[list[int]]],
    slots: Slots | None,
    borrow: bool,
    times: ReaderTimes,
) -> Iterator[list[dict]]:
    """The batches of units read by `pool`, in order; units are handed out while slots are
    free (a view's slot is free again once its batch is `HELD_BATCHES` batches old)."""
    units = [unit for batch in batches for unit in batch]
    free = deque(range(slots.count if slots else 0))
    held: deque[list[int]] = deque()  # the slots of the batches handed out, oldest first
    pending: deque[tuple[Future, list[int], list[int]]] = deque()  # (future, unit, its slots)
    ahead = AHEAD_PER_READER * workers  # views read ahead, without slots to bound them
    next_unit = 0

    def hand_out() -> None:
        nonlocal next_unit
        while next_unit < len(units):
            unit = units[next_unit]
            if slots is not None and len(free) < len(unit):
                return
            if slots is None and sum(len(u) for _, u, _ in pending) >= ahead:
                return
            taken = [free.popleft() for _ in unit] if slots else []
            pending.append((pool.submit(_read_unit, unit, taken or None), unit, taken))
            next_unit += 1

    for batch in batches:
        if len(held) >= HELD_BATCHES:
            free.extend(held.popleft())
        hand_out()
        joined: list[dict] = []
        taken_here: list[int] = []
        for _ in batch:
            future, _, taken = pending.popleft()
            try:
                unit, wall, cpu = future.result()
            except BrokenProcessPool as err:
                raise ReaderDied(
                    "a reader process died (killed, or out of memory?): run the same command "
                    "again to go on from the parts already written, with fewer --workers if "
                    "memory is short"
                ) from err
            times.wall, times.cpu = times.wall + wall, times.cpu + cpu
            joined += [slots.take(view, borrow) if slots else view for view in unit]
            taken_here += taken
            hand_out()
        if borrow:
            held.append(taken_here)
        else:
            free.extend(taken_here)
        yield joined
