"""What `train` trains on: one split's cached embeddings and low-res targets (`Views`), each
view's prompt made from its target, and the epoch's batches, one prompt strategy each.

The embeddings are read in the background in large sequential reads (`cache.loading`), and
the first epoch goes through the views window by window in the order they are read, each
window shuffled: training starts on the first batches while the rest is read."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from floodcache.cache.reader import Cache
from floodcache.prompts import Prompt, PromptOptions, PromptStrategy, make_prompt
from floodcache.sam.preprocess import IMAGE_SIZE, LOWRES_SIZE, valid_lowres
from floodcache.utils.memory import free_memory

LOWRES_TO_INPUT = IMAGE_SIZE / LOWRES_SIZE  # one low-res pixel spans 4x4 input pixels
LOWRES_CENTER = (LOWRES_TO_INPUT - 1) / 2  # SAM adds 0.5 itself, so 1.5 reaches the centre


STREAM_WINDOW = 64  # views of the first epoch shuffled together, in the order they are read
Batch = tuple[PromptStrategy, np.ndarray, list[Prompt]]  # strategy, view indices, prompts


@dataclass(frozen=True)
class PromptDraw:
    """Where an epoch's prompts come from: each view's seeded stream at `epoch`, made with
    `options` (`prompts.make_prompt`)."""

    seed: int
    epoch: int
    options: PromptOptions


class Views:
    """The cached embeddings and targets of one split: the embeddings read into RAM in the
    background when they fit (`loader`), else read for each batch."""

    def __init__(self, cache: Cache, split: str, in_memory: bool):
        self.rows = cache.rows(split)
        self.cache = cache
        self.image_id = cache.column("image_id")[self.rows]
        self.view = cache.column("view")[self.rows]
        self.input_size = cache.column("input_size")[self.rows]
        self.targets = cache.read("lowres_mask", self.rows) if len(self.rows) else None
        _check_binary(cache, self.rows, self.targets)
        loading = in_memory and len(self.rows)
        self.loader = cache.load_embeddings(self.rows, self.targets) if loading else None
        self._on_device: tuple[torch.Tensor, torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def embedding_batch(self, index: np.ndarray) -> np.ndarray:
        """Bx256x64x64 float16 embeddings of views `index`, once they are read."""
        if self.loader is not None:
            self.loader.wait(int(index.max()) + 1)
            return self.loader.array[index]
        return self.cache.embeddings(self.rows[index])

    def load_line(self) -> str:
        """What reading the embeddings took, for the log."""
        if self.loader is None:
            return "read for each batch (they do not fit in memory)"
        self.loader.result()
        return self.loader.stats.line()

    def close(self) -> None:
        """Stop reading (an error or Ctrl-C before the embeddings were all read)."""
        if self.loader is not None:
            self.loader.close()

    def __enter__(self) -> Views:
        return self

    def __exit__(self, *error) -> None:
        self.close()

    def batch(
        self, index: np.ndarray, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """views[index] on `device`: Bx256x64x64 embeddings as stored (float16), then
        Bx1x256x256 float {0,1} target and valid area (the image part of the padded frame)."""
        assert self.targets is not None, "a split without views has no batches"
        if self._on_device is None and device.type == "cuda" and self._fits_on(device):
            # float16 on the GPU once all is read: no host-to-device copy per step
            assert self.loader is not None, "_fits_on holds only once the views are loaded"
            self._on_device = (
                torch.from_numpy(self.loader.array).to(device),
                torch.from_numpy(self.targets).to(device),
            )
        if self._on_device is not None:
            rows = torch.from_numpy(index).to(device)
            embeddings, target = (stored[rows] for stored in self._on_device)
        else:
            embeddings = torch.from_numpy(self.embedding_batch(index)).to(device)
            target = torch.from_numpy(self.targets[index]).to(device)
        limits = torch.tensor([valid_lowres(self.input_size[i]) for i in index])
        grid = torch.arange(LOWRES_SIZE)
        valid = (grid[None, :, None] < limits[:, 0, None, None]) & (
            grid[None, None, :] < limits[:, 1, None, None]
        )
        return embeddings, target[:, None].float(), valid[:, None].to(device).float()

    def _fits_on(self, device: torch.device) -> bool:
        if self.loader is None or not self.loader.finished:
            return False
        return self.loader.array.nbytes < 0.5 * free_memory(device)


def _check_binary(cache: Cache, rows: np.ndarray, targets: np.ndarray | None) -> None:
    """CacheError naming the view where a low-res target holds other values than 0 and 1:
    the prompts of an epoch are made from the targets before their views' checksums are
    checked (as the embeddings are read), and such a target is damage, not a user's mask."""
    if targets is None:
        return
    wrong = np.flatnonzero(targets.reshape(len(targets), -1).max(axis=1) > 1)
    if len(wrong):
        raise cache.damaged_view(int(rows[wrong[0]]), "its low-res target is not 0 and 1")


def fits_in_memory(cache: Cache, fraction: float) -> bool:
    """Whether all embeddings take less than `fraction` of the RAM that is available now."""
    needed = cache.file["embeddings"].size * 2
    return needed < fraction * free_memory(torch.device("cpu"))


def lowres_prompt(
    strategy: PromptStrategy, views: Views, i: int, seed: int, epoch: int, options: PromptOptions
) -> Prompt | None:
    """The prompt for view i, made from its low-res target and moved to the 1024 input frame."""
    rows, cols = valid_lowres(views.input_size[i])
    assert views.targets is not None, "a split without views makes no prompts"
    mask = views.targets[i][:rows, :cols]
    prompt = make_prompt(
        strategy, mask, seed, str(views.image_id[i]), int(views.view[i]), epoch, options
    )
    return (
        None if prompt is None else prompt.scaled(LOWRES_TO_INPUT, LOWRES_TO_INPUT, LOWRES_CENTER)
    )


def make_batches(
    strategies: list[PromptStrategy],
    views: Views,
    draw: PromptDraw,
    batch_size: int,
    shuffle: bool,
) -> tuple[list[Batch], int]:
    """(strategy, view indices, prompts) batches and the views skipped; each batch has a
    single strategy.

    Each view gets one strategy of the mix per epoch (cycling, offset by a seeded shuffle), so
    a mix trains every strategy on every view over the epochs. Views with no water get no
    oracle prompt: they are counted in `skipped` and left out. Shuffled, the first epoch goes
    window by window (STREAM_WINDOW views in the order they are read, shuffled among
    themselves and batched together) so that it needs only the views read so far; later
    epochs shuffle all the views.
    """
    rng = np.random.default_rng([draw.seed, draw.epoch])
    count = len(views)
    if not shuffle:
        windows = [np.arange(count)]
    elif draw.epoch == 1:
        starts = range(0, count, STREAM_WINDOW)
        windows = [s + rng.permutation(min(STREAM_WINDOW, count - s)) for s in starts]
    else:
        windows = [rng.permutation(count)]
    batches: list[Batch] = []
    skipped, position = 0, 0
    for order in windows:
        made, missed = _window_batches(strategies, views, order, position, draw, batch_size)
        if shuffle:
            made = [made[j] for j in rng.permutation(len(made))]
        batches, skipped, position = batches + made, skipped + missed, position + len(order)
    return batches, skipped


def _window_batches(
    strategies: list[PromptStrategy],
    views: Views,
    order: np.ndarray,
    position: int,
    draw: PromptDraw,
    batch_size: int,
) -> tuple[list[Batch], int]:
    """The batches of the views `order` (positions `position`... of the epoch's order)."""
    groups: dict[str, list] = {s.name: [] for s in strategies}
    skipped = 0
    for offset, i in enumerate(order):
        strategy = strategies[(position + offset + draw.epoch) % len(strategies)]
        prompt = lowres_prompt(strategy, views, int(i), draw.seed, draw.epoch, draw.options)
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
    return batches, skipped
