"""`embed`'s readers: worker processes that read, augment and prepare each view for the encoder.

A reader's unit of work is one image's views within a batch (they share one decode); the
units come back in order and are joined into the encoder's batches.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import cv2
import numpy as np
from torch.utils.data import DataLoader, Dataset

from floodcache import data, encoder
from floodcache.views import ViewKey, make_view

if TYPE_CHECKING:
    from floodcache.embed import EmbedConfig

MAX_WORKERS = 16  # ~30-100 ms of CPU per view: 16 readers feed ~250 views/s


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


def _as_list(batch: list[dict]) -> list[dict]:
    return batch


READER_PREFETCH = 4  # units (an image's views in a batch) each reader keeps ready


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
    loader = DataLoader(
        ViewDataset(views, pairs, config),
        batch_sampler=units,
        num_workers=workers,
        collate_fn=_as_list,
        prefetch_factor=READER_PREFETCH if workers else None,
    )
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # before the readers start, which inherit it (set in a reader, it hangs)
    try:
        unit_views = iter(loader)
        for batch in batches:
            joined: list[dict] = []
            while len(joined) < len(batch):
                joined += next(unit_views)
            yield joined
    finally:
        cv2.setNumThreads(threads)
