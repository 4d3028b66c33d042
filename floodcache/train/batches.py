"""What `train` trains on: one split's cached embeddings and low-res targets (`Views`), each
view's prompt made from its target, and the epoch's batches, one prompt strategy each."""

from __future__ import annotations

import numpy as np
import torch

from floodcache.cache.reader import Cache
from floodcache.prompts import PromptOptions, make_prompt
from floodcache.sam import decoder as sam_decoder
from floodcache.sam.preprocess import IMAGE_SIZE, LOWRES_SIZE
from floodcache.utils.memory import free_memory

LOWRES_TO_INPUT = IMAGE_SIZE / LOWRES_SIZE  # one low-res pixel spans 4x4 input pixels
LOWRES_CENTER = (LOWRES_TO_INPUT - 1) / 2  # SAM adds 0.5 itself, so 1.5 reaches the centre


class Views:
    """The cached embeddings and targets of one split, in RAM when they fit, else read per batch."""

    def __init__(self, cache: Cache, split: str, in_memory: bool):
        self.rows = cache.rows(split)
        self.cache = cache
        self.image_id = cache.column("image_id")[self.rows]
        self.view = cache.column("view")[self.rows]
        self.input_size = cache.column("input_size")[self.rows]
        self.targets = cache.read("lowres_mask", self.rows) if len(self.rows) else None
        self.embeddings = cache.embeddings(self.rows) if in_memory and len(self.rows) else None
        self._on_device: tuple[torch.Tensor, torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def embedding_batch(self, index: np.ndarray) -> np.ndarray:
        if self.embeddings is not None:
            return self.embeddings[index]
        order = np.argsort(index)  # HDF5 wants ascending rows
        data = self.cache.embeddings(self.rows[index[order]])
        return data[np.argsort(order)]

    def batch(
        self, index: np.ndarray, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """views[index] on `device`: Bx256x64x64 embeddings as stored (float16), then
        Bx1x256x256 float {0,1} target and valid area (the image part of the padded frame)."""
        if self._on_device is None and device.type == "cuda" and self._fits_on(device):
            # float16 on the GPU: no host-to-device copy per step (1160 views take 2.4 GB)
            self._on_device = (
                torch.from_numpy(self.embeddings).to(device),
                torch.from_numpy(self.targets).to(device),
            )
        if self._on_device is not None:
            rows = torch.from_numpy(index).to(device)
            embeddings, target = (stored[rows] for stored in self._on_device)
        else:
            embeddings = torch.from_numpy(self.embedding_batch(index)).to(device)
            target = torch.from_numpy(self.targets[index]).to(device)
        limits = torch.tensor([sam_decoder.valid_lowres(self.input_size[i]) for i in index])
        grid = torch.arange(LOWRES_SIZE)
        valid = (grid[None, :, None] < limits[:, 0, None, None]) & (
            grid[None, None, :] < limits[:, 1, None, None]
        )
        return embeddings, target[:, None].float(), valid[:, None].to(device).float()

    def _fits_on(self, device: torch.device) -> bool:
        if self.embeddings is None:
            return False
        return self.embeddings.nbytes < 0.5 * free_memory(device)


def fits_in_memory(cache: Cache, fraction: float) -> bool:
    """Whether all embeddings take less than `fraction` of the RAM that is available now."""
    needed = cache.file["embeddings"].size * 2
    return needed < fraction * free_memory(torch.device("cpu"))


def lowres_prompt(strategy, views: Views, i: int, seed: int, epoch: int, options: PromptOptions):
    """The prompt for view i, made from its low-res target and moved to the 1024 input frame."""
    rows, cols = sam_decoder.valid_lowres(views.input_size[i])
    mask = views.targets[i][:rows, :cols]
    prompt = make_prompt(
        strategy, mask, seed, str(views.image_id[i]), int(views.view[i]), epoch, options
    )
    return (
        None if prompt is None else prompt.scaled(LOWRES_TO_INPUT, LOWRES_TO_INPUT, LOWRES_CENTER)
    )


def make_batches(
    strategies, views: Views, seed: int, epoch: int, options, batch_size: int, shuffle: bool
):
    """Yield (strategy, view indices, prompts) batches; each batch has a single strategy.

    Each view gets one strategy of the mix per epoch (cycling, offset by a seeded shuffle), so
    a mix trains every strategy on every view over the epochs. Views with no water get no
    oracle prompt: they are counted in `skipped` and left out.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(views)) if shuffle else np.arange(len(views))
    groups: dict[str, list] = {s.name: [] for s in strategies}
    skipped = 0
    for position, i in enumerate(order):
        strategy = strategies[(position + epoch) % len(strategies)]
        prompt = lowres_prompt(strategy, views, int(i), seed, epoch, options)
        if prompt is None:
            skipped += 1
            continue
        groups[strategy.name].append((int(i), prompt))
    batches = []
    for strategy in strategies:
        items = groups[strategy.name]
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            batches.append((strategy, np.array([i for i, _ in chunk]), [p for _, p in chunk]))
    if shuffle:
        batches = [batches[j] for j in rng.permutation(len(batches))]
    return batches, skipped
