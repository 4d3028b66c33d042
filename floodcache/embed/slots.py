"""Slots of memory shared with embed's forked readers, which write each view's pixels in
place for the main process to read there (page-locked for CUDA where it can be)."""

from __future__ import annotations

import logging
import math
import mmap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch

from floodcache.embed import shared_memory
from floodcache.sam.preprocess import IMAGE_SIZE, LOWRES_SIZE

log = logging.getLogger(__name__)

PIXEL_FIELDS = ("resized", "lowres_mask", "image", "mask")  # a view's large uint8 arrays


# A view's slot of shared memory holds its pixel arrays; a view too big for it (a photo over
# ~2 MP with --resize torch) travels pickled through the pipe instead.
SLOT_BYTES = {"pil": IMAGE_SIZE * IMAGE_SIZE * 3 + LOWRES_SIZE**2, "torch": 1920 * 1080 * 4}


class Shared(NamedTuple):
    """Where a view's pixel array lies in the readers' shared memory."""

    offset: int
    shape: tuple[int, ...]


@dataclass
class Slots:
    """`count` slots of `size` bytes in one block of memory shared with the readers, which
    write the views in place; the main process reads them there.

    The block is an anonymous shared mapping the readers inherit when forked: made in no
    time, its pages touched only when used (torch's shared memory zeroes or copies all of
    it, seconds of this process's CPU), and not in /dev/shm (Docker's holds 64 MB). Where
    readers are not forked, there are no slots: the views come through pipes.
    """

    block: torch.Tensor
    size: int
    memory: np.ndarray = field(init=False)  # the block, as numpy reads and writes it

    def __post_init__(self) -> None:
        self.memory = self.block.numpy()

    @classmethod
    def make(cls, count: int, size: int) -> Slots:
        memory = mmap.mmap(-1, count * size)  # MAP_SHARED | MAP_ANONYMOUS
        return cls(torch.frombuffer(memory, dtype=torch.uint8), size)

    @property
    def count(self) -> int:
        return len(self.block) // self.size

    def put(self, view: dict, slot: int) -> None:
        """Move `view`'s pixel arrays into `slot` (a `Shared` in each one's place), if they fit."""
        names = [name for name in PIXEL_FIELDS if name in view]
        if sum(view[name].nbytes for name in names) > self.size:
            return
        offset = slot * self.size
        for name in names:
            array = view[name]
            assert array.dtype == np.uint8, f"{name} is {array.dtype}, not uint8"
            self.memory[offset : offset + array.size] = array.reshape(-1)
            view[name] = Shared(offset, array.shape)
            offset += array.size

    def take(self, view: dict, borrow: bool) -> dict:
        """`view` with numpy arrays in place of its `Shared` places: reading the slot in place
        if `borrow`, else copies. The low-res target is always copied: the cache writer keeps
        it until the batch is written, long after the slot is used again."""
        for name in PIXEL_FIELDS:
            if isinstance(place := view.get(name), Shared):
                size = math.prod(place.shape)
                array = self.memory[place.offset : place.offset + size].reshape(place.shape)
                view[name] = array if borrow and name != "lowres_mask" else array.copy()
        return view


@contextmanager
def page_locked(block: torch.Tensor | None) -> Iterator[None]:
    """`block` page-locked for CUDA inside, so that copies from it to the GPU need no staging;
    where CUDA refuses, it stays pageable and copies are staged (`device_resize.staged`)."""
    locked = block is not None and shared_memory.page_lock(block)
    if block is not None and not locked:
        log.info("could not page-lock the readers' shared memory: copies are staged")
    try:
        yield
    finally:
        if locked and block is not None:
            shared_memory.page_unlock(block)
