"""`embed`'s readers: worker processes that read, augment and prepare each view for the encoder.

A reader's unit of work is one image's views within a batch (they share one decode); the
units come back in order and are joined into the encoder's batches. Their pixels come back
through shared memory where /dev/shm has room (`_in_shared_memory`), else through pipes.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
from collections.abc import Iterator
from typing import TYPE_CHECKING, NamedTuple

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from floodcache import data, encoder, shared_memory
from floodcache.views import ViewKey, make_view

if TYPE_CHECKING:
    from floodcache.embed import EmbedConfig

log = logging.getLogger(__name__)

MAX_WORKERS = 16  # ~250 views/s at up to ~60 ms of CPU a view (bench scenes: 16-28 ms)


def default_workers() -> int:
    """Reader processes when not told: one per CPU core but the main process's, at most 16."""
    return max(1, min(MAX_WORKERS, (os.cpu_count() or 2) - 1))


PREVIEW_SIDE = 512  # longest side of the JPEG kept per view for report galleries


class ViewDataset(Dataset):
    """Pending views -> dicts of a view's encoder input (`prepare_view`) and every cache field
    but the embedding."""

    def __init__(self, views: list[ViewKey], pairs: dict[str, data.Pair], config: EmbedConfig):
        self.views, self.pairs = views, pairs
        self.seed, self.on_mismatch, self.resize = config.seed, config.on_mismatch, config.resize
        self.loaded: tuple[str, np.ndarray, np.ndarray] | None = None  # (image_id, image, mask)

    def __len__(self) -> int:
        return len(self.views)

    def __getitem__(self, index: int) -> dict:
        key = self.views[index]
        pair = self.pairs[key.image_id]
        image, mask = self.load(key.image_id)
        image, mask = make_view(image, mask, self.seed, key.image_id, key.view)
        return prepare_view(image, mask, self.resize) | {
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
            image, mask = data.load_pair(self.pairs[image_id], self.on_mismatch)
            image.flags.writeable = mask.flags.writeable = False
            self.loaded = (image_id, image, mask)
        return self.loaded[1], self.loaded[2]


def prepare_view(image: np.ndarray, mask: np.ndarray, resize: str = "pil") -> dict:
    """A view's SAM input and metric fields from its HxWx3 uint8 image and HxW {0,1} mask.

    The input is the "resized" image and its "lowres_mask" target; with resize="torch" it is
    the view's "image" and "mask" as they are, resized on the device (`device_resize`).
    """
    if resize == "torch":
        pixels = {"image": image, "mask": np.ascontiguousarray(mask, np.uint8)}
    else:
        pixels = {
            "resized": encoder.resize_to_input(image),
            "lowres_mask": encoder.lowres_target(mask),
        }
    scale = PREVIEW_SIDE / max(image.shape[:2])
    preview = (
        image
        if scale >= 1
        else cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    )
    ok_mask, png = cv2.imencode(".png", mask.astype(np.uint8))
    ok_jpeg, jpeg = cv2.imencode(".jpg", preview[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok_mask and ok_jpeg, "OpenCV failed to encode an in-memory image"
    return pixels | {
        "mask_png": png.ravel(),
        "image_jpeg": jpeg.ravel(),
        "original_size": np.array(image.shape[:2], np.int32),
        "input_size": np.array(encoder.input_size(image.shape[:2]), np.int32),
        "water_fraction": np.float32(np.count_nonzero(mask) / mask.size),  # mask.mean(), {0,1}
    }


PIXEL_FIELDS = ("resized", "lowres_mask", "image", "mask")  # a view's large uint8 arrays
READER_PREFETCH = 4  # units (an image's views in a batch) each reader keeps ready
UNIT_BYTES = 32 << 20  # a generous unit: 4 views of a 1080p photo at full size (--resize torch)


class Shared(NamedTuple):
    """Where a view's pixel array lies in its unit's shared-memory block."""

    offset: int
    shape: tuple[int, ...]


def _in_shared_memory(unit: list[dict]) -> tuple[list[dict], torch.Tensor]:
    """A unit's views with their pixel arrays moved into one block of shared memory.

    The reader process sends the block's name, not its bytes. Pickled through a pipe, the
    pixels (~2-6 MB a view) took the main process 3.2-3.4 ms of CPU a view to receive, against
    1.0-1.1 this way (this CPU, one reader, generated scenes, --resize torch), and the pipe
    is one more thing the readers queue on.
    """
    arrays = [(view, name) for view in unit for name in PIXEL_FIELDS if name in view]
    block = torch.empty(sum(view[name].nbytes for view, name in arrays), dtype=torch.uint8)
    flat, offset = block.share_memory_().numpy(), 0
    for view, name in arrays:
        array = view[name]
        assert array.dtype == np.uint8, f"{name} is {array.dtype}, not uint8"
        flat[offset : offset + array.size] = array.reshape(-1)
        view[name] = Shared(offset, array.shape)
        offset += array.size
    return unit, block


def _from_shared_memory(unit: list[dict], block: torch.Tensor) -> list[dict]:
    """The views of `_in_shared_memory` with numpy arrays in place of their `Shared` places.

    The arrays read the block in place, except the low-res target: the cache writer keeps it
    until the batch is written, and the block can go as soon as the images are encoded.
    """
    flat = block.numpy()
    for view in unit:
        for name in PIXEL_FIELDS:
            if isinstance(place := view.get(name), Shared):
                size = int(np.prod(place.shape))
                array = flat[place.offset : place.offset + size].reshape(place.shape)
                view[name] = array.copy() if name == "lowres_mask" else array
    return unit


def _shared_memory_usable(workers: int) -> bool:
    """Whether /dev/shm has room for the units the readers keep ready (`UNIT_BYTES` each)."""
    return shared_memory.room() >= workers * READER_PREFETCH * UNIT_BYTES


def _unit_by_pipe(unit: list[dict]) -> list[dict]:
    return unit


def _ignore_ctrl_c(worker: int) -> None:
    """Readers leave Ctrl-C to embed's process, which stops them: hit by it themselves, they
    died with views still queued, and the main process waited ~5 s for each (11 s for 2)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def read_batches(
    batches: list[list[ViewKey]], pairs: dict[str, data.Pair], config: EmbedConfig, workers: int
) -> Iterator[list[dict]]:
    """Each batch of views read, augmented and prepared (`ViewDataset`) by `workers` processes.

    A reader's unit of work is one image's views within a batch (they share one decode), so
    the readers stay busy and the first batch comes soon; the units come back in order and
    are joined into the batches asked. OpenCV runs one thread per reader: 15 readers with one
    OpenCV thread per core each would fight over the cores.
    """
    views = [key for batch in batches for key in batch]
    units, start = [], 0
    for batch in batches:
        for _, same_image in itertools.groupby(batch, key=lambda key: key.image_id):
            size = len(list(same_image))
            units.append(list(range(start, start + size)))
            start += size
    shared = workers > 0 and _shared_memory_usable(workers)
    if workers and not shared:
        log.info("little room in /dev/shm: the readers send their views through pipes")
    loader = DataLoader(
        ViewDataset(views, pairs, config),
        batch_sampler=units,
        num_workers=workers,
        collate_fn=_in_shared_memory if shared else _unit_by_pipe,
        prefetch_factor=READER_PREFETCH if workers else None,
        worker_init_fn=_ignore_ctrl_c,
    )
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # before the readers start, which inherit it (set in a reader, it hangs)
    try:
        unit_views = iter(loader)
        for batch in batches:
            joined: list[dict] = []
            while len(joined) < len(batch):
                unit = next(unit_views)
                joined += _from_shared_memory(*unit) if shared else unit
            yield joined
    finally:
        cv2.setNumThreads(threads)
