"""`train`: fine-tune SAM's mask decoder from the cache; image and prompt encoders stay frozen.

No image is encoded again: each step decodes a batch of cached embeddings, one prompt each,
against the cached 256x256 targets. Loss: BCE + Dice on the low-res logits (over the image part
of the padded frame), plus the mean squared error of SAM's IoU head against the real IoU of
each mask, so that picking a mask by the IoU head stays meaningful after fine-tuning.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from floodcache import decoder as sam_decoder
from floodcache import runs
from floodcache.atomic_write import write_whole
from floodcache.cache import Cache, CacheError, config_difference
from floodcache.choices import AUTO_PRECISION, TRAIN_PRECISIONS
from floodcache.encoder import (
    DTYPES,
    autocast,
    pick_device,
)
from floodcache.encoder import resolve_precision as encoder_precision
from floodcache.prompts import PromptOptions, PromptStrategy, parse_prompts
from floodcache.train_views import Views, fits_in_memory, make_batches

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything `train` needs; saved beside the decoder it produces."""

    cache: Path
    out: Path
    prompt: str = "point"  # one strategy or several, comma-separated (trains on a mix)
    epochs: int = 15
    lr: float = 1e-4  # Adam
    step_size: int = 5  # StepLR: epochs between learning-rate drops
    gamma: float = 0.5  # StepLR: factor at each drop
    batch_size: int = 16  # views per decoder step
    seed: int = 0  # shuffling and random prompts
    points: int = 3  # k positive and k negative points for the `points` strategy
    box_jitter: float = 0.1  # training-time box noise (fraction of the box side)
    device: str | None = None
    overwrite: bool = False
    progress: bool = True
    memory_fraction: float = 0.5  # load the embeddings in RAM when they fit in this much
    # The decoder's forward: fp32, or bf16 autocast (weights and loss stay fp32), or "auto":
    # bf16 on a GPU, fp32 on a CPU (resolve_precision); bf16 results differ in the 3rd digit
    precision: str = "auto"


# TrainConfig fields that change what a run learns (not where it goes or how it is shown);
# `run` keeps a finished run that matches them, and a resumed run must match them too.
LEARNING_SETTINGS = ("prompt", "epochs", "lr", "step_size", "gamma", "batch_size", "seed")
LEARNING_SETTINGS += ("points", "box_jitter")


@dataclass
class EpochStats:
    epoch: int
    train_loss: float
    train_iou: float
    val_loss: float
    val_iou: float
    lr: float
    seconds: float
    views: int
    skipped: int = 0  # views with no water, for which an oracle prompt cannot exist


@dataclass
class TrainResult:
    out: Path
    best_epoch: int
    history: list[EpochStats] = field(default_factory=list)

    @property
    def views_per_second(self) -> float:
        views = sum(h.views for h in self.history)
        return views / max(sum(h.seconds for h in self.history), 1e-9)


def losses(logits, iou_pred, target, valid) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample, per-mask BCE + Dice, IoU-head MSE and real IoU.

    logits: BxCx256x256; iou_pred: BxC; target, valid: Bx1x256x256 float {0,1}.
    Returns (BxC segmentation loss, BxC IoU-head loss, BxC IoU), all over valid pixels only.
    """
    target = target.expand_as(logits)
    valid = valid.expand_as(logits)
    area = valid.sum(dim=(2, 3)).clamp(min=1)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none") * valid
    bce = bce.sum(dim=(2, 3)) / area
    prob = torch.sigmoid(logits) * valid
    dice = 1 - (2 * (prob * target).sum(dim=(2, 3)) + 1) / (
        prob.sum(dim=(2, 3)) + (target * valid).sum(dim=(2, 3)) + 1
    )
    hard = (logits > 0).float() * valid
    inter = (hard * target).sum(dim=(2, 3))
    union = (hard + target * valid).clamp(max=1).sum(dim=(2, 3))
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
    return bce + dice, (iou_pred - iou.detach()) ** 2, iou


def resolve_precision(precision: str, device: torch.device) -> str:
    """`precision`, with 'auto' made bf16 on a GPU and fp32 on a CPU (fp16 training would
    need loss scaling).

    bf16 autocast trained 2013 views/s against fp32's 1796 on an H100 (64 views a step,
    `bench`; 3x before the regrouped cross attentions); on a CPU fp32 keeps full precision.
    """
    return encoder_precision(precision, device, gpu="bf16")


def views_per_pass(device: torch.device, precision: str) -> int | None:
    """How many views of a batch the decoder takes at once: all (None) on a GPU; on a CPU,
    one fp32 view's worth of activations (1 view in fp32, 2 in bf16).

    One fp32 view's largest activation takes 8 MB, a batch of 16's 134 MB. Blocks that big
    come from the OS as fresh pages at every step (glibc maps blocks over 32 MB anew each
    time) and outgrow the caches; one view's are reused from the heap. On a CPU the page
    faults cost more than the matmuls a pass saves: a batch of 16 trains ~25% faster this way.
    """
    if device.type != "cpu":
        return None
    dtype = DTYPES[precision] or torch.float32
    return torch.float32.itemsize // dtype.itemsize


class DecoderTrainer:
    """The frozen prompt encoder, the trainable mask decoder and one step over a batch."""

    def __init__(self, cache: Cache, config: TrainConfig):
        self.device = pick_device(config.device)
        self.precision = resolve_precision(config.precision, self.device)
        if self.precision not in TRAIN_PRECISIONS:
            raise ValueError(
                f"train precision {config.precision!r}: choose {AUTO_PRECISION}, "
                f"{' or '.join(TRAIN_PRECISIONS)} (fp16 would need loss scaling)"
            )
        torch.manual_seed(config.seed)
        self.prompt_encoder = (
            sam_decoder.load_module(
                sam_decoder.build_prompt_encoder(), cache.sam_state("prompt_encoder")
            )
            .to(self.device)
            .eval()
        )
        self.prompt_encoder.requires_grad_(False)
        self.mask_decoder = sam_decoder.load_module(
            sam_decoder.build_mask_decoder(), cache.sam_state("mask_decoder")
        ).to(self.device)
        # fused: one kernel over all parameters instead of ~10 per tensor (CPU and CUDA)
        self.optimizer = torch.optim.Adam(self.mask_decoder.parameters(), lr=config.lr, fused=True)
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=config.step_size, gamma=config.gamma
        )
        self.views_per_pass = views_per_pass(self.device, self.precision)

    def step(
        self, strategy: PromptStrategy, views: Views, index: np.ndarray, prompts, train: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch: (summed loss, summed IoU) over its views, 0-dim tensors left on the
        device (reading them waits for the GPU); updates the decoder when `train`.

        The batch goes through the decoder in passes of `views_per_pass` views (all at once
        when None); the gradient of the batch's mean loss is the sum of the passes' gradients,
        so the one Adam step sees the gradient of the whole batch, whatever the passes.
        """
        embeddings, target, valid = views.batch(index, self.device)
        self.mask_decoder.train(train)
        if train:
            self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.precision):
            encoded = sam_decoder.encode(self.prompt_encoder, prompts)
        total_loss = total_iou = torch.zeros((), device=self.device)
        size = self.views_per_pass or len(index)
        for start in range(0, len(index), size):
            part = slice(start, start + size)
            with torch.set_grad_enabled(train):
                loss, iou = self._view_losses(
                    strategy.multimask,
                    embeddings[part].float(),
                    encoded.select(part),
                    target[part],
                    valid[part],
                )
                if train:
                    (loss.sum() / len(index)).backward()
            total_loss, total_iou = total_loss + loss.detach().sum(), total_iou + iou.sum()
        if train:
            for parameter in self.mask_decoder.parameters():
                if parameter.grad is None:  # a mask token decode() left out: as SAM's
                    parameter.grad = torch.zeros_like(parameter)  # forward, a zero gradient
            self.optimizer.step()
        return total_loss, total_iou

    def _view_losses(
        self,
        multimask: bool,
        embeddings: torch.Tensor,
        prompts: sam_decoder.EncodedPrompts,
        target: torch.Tensor,
        valid: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per view of one pass (B views, shapes as `Views.batch`, embeddings float): the
        training loss and the IoU of the mask the IoU head picks, both B."""
        with autocast(self.device, self.precision):
            logits, iou_pred = sam_decoder.decode_encoded(
                self.mask_decoder, embeddings, prompts, multimask
            )
        logits, iou_pred = logits.float(), iou_pred.float()
        seg, iou_loss, iou = losses(logits, iou_pred, target, valid)
        # Ambiguous prompts: learn from the best of SAM's three masks (as SAM was trained).
        best = seg.argmin(dim=1)
        picked = iou_pred.argmax(dim=1)  # what inference would return: the IoU head's pick
        rows = torch.arange(len(seg), device=self.device)
        return seg[rows, best] + iou_loss.mean(dim=1), iou[rows, picked]

    def run_epoch(
        self, strategies, views: Views, config: TrainConfig, epoch: int, train: bool, bar=None
    ) -> tuple[float, float, int, int]:
        """Mean loss, mean IoU, views used and views skipped over one pass."""
        options = PromptOptions(
            points=config.points, box_jitter=config.box_jitter if train else 0.0
        )
        # Validation prompts are the same every epoch (epoch 0), so epochs compare fairly.
        batches, skipped = make_batches(
            strategies,
            views,
            config.seed,
            epoch if train else 0,
            options,
            config.batch_size,
            shuffle=train,
        )
        total_loss = total_iou = torch.zeros((), device=self.device)
        count = 0
        for strategy, index, prompts in batches:
            loss, iou = self.step(strategy, views, index, prompts, train)
            total_loss, total_iou, count = total_loss + loss, total_iou + iou, count + len(index)
            if bar is not None:
                bar.update(len(index))
        count_or_1 = max(count, 1)  # one wait for the GPU per epoch, not two per step
        return total_loss.item() / count_or_1, total_iou.item() / count_or_1, count, skipped


def run_train(config: TrainConfig) -> TrainResult:
    """Train the mask decoder from the cache and write it, its config and its history.

    After every epoch the training state goes to `<out>.partial/`: a run stopped by Ctrl-C or
    a crash resumes from there when the same command runs again, and ends as it would have.
    """
    runs.refuse_to_replace(config.out, config.overwrite)
    strategies = parse_prompts(config.prompt)
    # Recorded resolved: config.json and a resumed run say what actually ran.
    config = replace(
        config, precision=resolve_precision(config.precision, pick_device(config.device))
    )
    with Cache.open(config.cache) as cache:
        in_memory = fits_in_memory(cache, config.memory_fraction)
        train_views = Views(cache, "train", in_memory)
        val_views = Views(cache, "val", in_memory)
        if not len(train_views) or not len(val_views):
            raise CacheError(
                f"{config.cache} needs train and val views to train; it has "
                f"{len(train_views)} and {len(val_views)}"
            )
        trainer = DecoderTrainer(cache, config)
        progress = Progress(config, cache)
        history, best = progress.resume(trainer)
        history, best = _fit(
            trainer, strategies, train_views, val_views, config, progress, history, best
        )
        _save_run(config, cache, history, best, strategies)
        progress.remove()
    return TrainResult(config.out, best[0], history)


class Progress:
    """The state after the last finished epoch, in `<out>.partial/state.pt`, for resuming."""

    # The settings a resumed run must share with the run it continues (precision resolved:
    # `run` asks "auto", so it does not compare it).
    SAME = (*LEARNING_SETTINGS, "precision")

    def __init__(self, config: TrainConfig, cache: Cache):
        out = Path(config.out)
        self.folder = out.with_name(out.name + ".partial")
        self.identity = {k: getattr(config, k) for k in self.SAME}
        self.identity["cache_fingerprint"] = cache.fingerprint
        self.overwrite = config.overwrite

    def resume(self, trainer: DecoderTrainer) -> tuple[list[EpochStats], tuple]:
        """Load the saved epochs into `trainer`; ([], no best) when starting afresh."""
        state_file = self.folder / "state.pt"
        if not state_file.exists() or self.overwrite:
            shutil.rmtree(self.folder, ignore_errors=True)
            return [], (0, -1.0, None)
        state = torch.load(state_file, weights_only=True)
        if state["identity"] != self.identity:
            diff = config_difference(state["identity"], self.identity)
            raise CacheError(
                f"{self.folder} holds an unfinished run with other settings:\n  "
                + "\n  ".join(diff)
                + "\nrerun it with its own settings to finish it, or pass --overwrite"
            )
        trainer.mask_decoder.load_state_dict(state["decoder"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.scheduler.load_state_dict(state["scheduler"])
        history = [EpochStats(**h) for h in state["history"]]
        log.info("resuming %s after epoch %d", self.folder, len(history))
        return history, state["best"]

    def save(self, trainer: DecoderTrainer, history: list[EpochStats], best: tuple) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        state = {
            "identity": self.identity,
            "decoder": trainer.mask_decoder.state_dict(),
            "optimizer": trainer.optimizer.state_dict(),
            "scheduler": trainer.scheduler.state_dict(),
            "history": [asdict(h) for h in history],
            "best": best,
        }
        write_whole(self.folder / "state.pt", lambda tmp: torch.save(state, tmp))

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _fit(trainer, strategies, train_views, val_views, config, progress, history, best):
    """Epochs len(history)+1 .. config.epochs; returns the history and (epoch, IoU, state)."""
    bar = tqdm(
        total=config.epochs * len(train_views),
        initial=len(history) * len(train_views),
        unit="view",
        desc="train",
        disable=not config.progress,
        dynamic_ncols=True,
    )
    try:
        for epoch in range(len(history) + 1, config.epochs + 1):
            start = time.perf_counter()
            lr = trainer.optimizer.param_groups[0]["lr"]
            train_loss, train_iou, seen, skipped = trainer.run_epoch(
                strategies, train_views, config, epoch, train=True, bar=bar
            )
            trainer.scheduler.step()
            val_loss, val_iou, _, _ = trainer.run_epoch(
                strategies, val_views, config, epoch, train=False
            )
            seconds = time.perf_counter() - start
            history.append(
                EpochStats(
                    epoch, train_loss, train_iou, val_loss, val_iou, lr, seconds, seen, skipped
                )
            )
            bar.write(
                f"epoch {epoch:3d}  train loss {train_loss:.4f} IoU {train_iou:.3f}  "
                f"val loss {val_loss:.4f} IoU {val_iou:.3f}  lr {lr:.2e}"
            )
            if val_iou > best[1]:
                best = (epoch, val_iou, copy.deepcopy(trainer.mask_decoder.state_dict()))
            progress.save(trainer, history, best)
    finally:
        bar.close()
    return history, best


def _save_run(config, cache: Cache, history, best, strategies) -> None:
    """The best epoch's decoder, the run's record and its history, as a run folder."""
    record = {
        "config": json.loads(json.dumps(asdict(config), default=str)),
        "prompts": {s.name: {"oracle": s.oracle, "multimask": s.multimask} for s in strategies},
        "cache_fingerprint": cache.fingerprint,
        "model_type": cache.model_type,
        "checkpoint_sha256": str(cache.file.attrs["checkpoint_sha256"]),
        "best_epoch": best[0],
        "best_val_iou": best[1],
    }
    runs.save_run(config.out, best[2], record, [asdict(h) for h in history])
