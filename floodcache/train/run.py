"""`train`: fine-tune SAM's mask decoder from the cache; image and prompt encoders stay frozen.

No image is encoded again: each step decodes a batch of cached embeddings, one prompt each,
against the cached 256x256 targets. Loss: BCE + Dice on the low-res logits (over the image part
of the padded frame), plus the mean squared error of SAM's IoU head against the real IoU of
each mask, so that picking a mask by the IoU head stays meaningful after fine-tuning.
"""

from __future__ import annotations

import copy
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from tqdm import tqdm

from floodcache.cache.format import CacheError
from floodcache.cache.reader import Cache
from floodcache.cache.verify import check_cache, check_views
from floodcache.prompts import PromptStrategy, parse_prompts
from floodcache.runtime import Runtime
from floodcache.sam.checkpoints import CheckpointError
from floodcache.sam.model import read_weights, save_weights
from floodcache.train import runs
from floodcache.train.batches import Views, fits_in_memory
from floodcache.train.config import TrainConfig
from floodcache.train.trainer import DecoderTrainer
from floodcache.train.weights import non_finite, save_run
from floodcache.utils import outputs
from floodcache.utils.atomic import write_whole
from floodcache.utils.estimate import estimate_line
from floodcache.utils.identity import refuse_other

log = logging.getLogger(__name__)


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
    val_seconds: float = 0.0  # of `seconds`: validation's share of the epoch


@dataclass
class Best:
    """The epoch with the best validation IoU so far, and its decoder's weights."""

    epoch: int = 0
    val_iou: float = -1.0
    decoder: dict[str, torch.Tensor] | None = None

    def to_dict(self) -> dict:  # what torch.save keeps: plain containers, loaded weights_only
        return {"epoch": self.epoch, "val_iou": self.val_iou, "decoder": self.decoder}


class Diverged(Exception):
    """An epoch ended with a loss or a weight that is not finite: the epochs before it, and
    the best of them (`best.decoder` None when there is none)."""

    def __init__(self, epoch: int, what: str, history: list[EpochStats], best: Best):
        super().__init__(f"epoch {epoch}: {what}")
        self.epoch, self.what, self.history, self.best = epoch, what, history, best


@dataclass
class Training:
    """What every epoch of a run works with."""

    trainer: DecoderTrainer
    strategies: list[PromptStrategy]  # the training mix
    train_views: Views
    val_views: Views
    config: TrainConfig


@dataclass
class TrainResult:
    out: Path
    best_epoch: int
    history: list[EpochStats] = field(default_factory=list)

    @property
    def views_per_second(self) -> float:
        views = sum(h.views for h in self.history)
        return views / max(sum(h.seconds for h in self.history), 1e-9)

    @property
    def validation_share(self) -> float:
        """Validation's part of the epochs' time."""
        return sum(h.val_seconds for h in self.history) / max(
            sum(h.seconds for h in self.history), 1e-9
        )


def run_train(config: TrainConfig) -> TrainResult:
    """Train the mask decoder from the cache and write it, its config and its history.

    After every epoch the training state goes to `<out>.partial/`: a run stopped by Ctrl-C or
    a crash resumes from there when the same command runs again, and ends as it would have.
    """
    with runs.writing_run(config.run_folder):
        return _train(config)


def _train(config: TrainConfig) -> TrainResult:
    runs.refuse_to_replace(config.run_folder, config.overwrite)
    # `.<out>.tmp-<pid>-<12 hex>` (the run folder written whole) is the longest made from it
    outputs.check_name_room(config.run_folder, 32, "--out")
    strategies = parse_prompts(config.train_prompts)
    # Recorded resolved: config.json and a resumed run say what actually ran.
    runtime = Runtime.resolve(config.device, config.precision, "train")
    config = replace(config, precision=runtime.precision)
    with Cache.open(config.cache) as cache:
        in_memory = fits_in_memory(cache, config.memory_fraction)
        # nothing learnt from a damaged cache: views loaded into memory are checked as they
        # are read; read batch by batch, they are checked first
        if in_memory:
            check_cache(cache)
        else:
            check_views(cache, ("train", "val"))
        views = [Views(cache, split, in_memory) for split in ("train", "val")]
        try:
            if not all(len(split) for split in views):
                raise CacheError(
                    f"{config.cache} needs train and val views to train; it has "
                    f"{len(views[0])} and {len(views[1])}"
                )
            trainer = DecoderTrainer(cache, config, runtime)
            training = Training(trainer, strategies, views[0], views[1], config)
            progress = Progress(config, cache)
            history, best = progress.resume(training.trainer)
            history, best = _fit(training, progress, history, best)
        except Diverged as diverged:
            _keep_before(diverged, config, cache, strategies, progress)
        finally:
            for split in views:
                split.close()
        _save_run(config, cache, history, best, strategies)
        progress.remove()
    return TrainResult(config.run_folder, best.epoch, history)


def _keep_before(
    diverged: Diverged,
    config: TrainConfig,
    cache: Cache,
    strategies: list[PromptStrategy],
    progress: Progress,
) -> None:
    """Keep the best epoch before a divergence as the run, when there is one, then raise
    ValueError naming the epoch and the likely cause. No decoder that is not finite is kept,
    nor the diverged epoch's training state."""
    best = diverged.best
    if best.decoder is not None:
        _save_run(config, cache, diverged.history, best, strategies, diverged.epoch)
        kept = (
            f"{config.out} keeps epoch {best.epoch}, the best before it (--overwrite replaces it)"
        )
    else:
        kept = "no epoch before it to keep: nothing was written"
    progress.remove()
    raise ValueError(
        f"training diverged at epoch {diverged.epoch} ({diverged.what}); the learning rate is "
        f"the likely cause: train again with a smaller --lr than {config.lr:g} (the default is "
        f"{TrainConfig.lr:g}); {kept}"
    )


def _divergence(stats: EpochStats, trainer: DecoderTrainer) -> str | None:
    """What is not finite after an epoch (its losses, then the decoder's weights), or None."""
    for name in ("train_loss", "val_loss"):
        if not math.isfinite(getattr(stats, name)):
            return f"{name.replace('_', ' ')} {getattr(stats, name)}"
    weight = non_finite(trainer.mask_decoder.state_dict())
    return None if weight is None else f"the decoder weight {weight} is not finite"


class Progress:
    """The state after the last finished epoch, in `<out>.partial/state.pt`, for resuming; a
    resumed run must have the identity of the run it continues (`runs.run_identity`, its
    precision resolved)."""

    def __init__(self, config: TrainConfig, cache: Cache):
        out = config.run_folder
        self.folder = out.with_name(out.name + ".partial")
        self.identity = runs.run_identity(config, cache.fingerprint)
        self.overwrite = config.overwrite

    def resume(self, trainer: DecoderTrainer) -> tuple[list[EpochStats], Best]:
        """Load the saved epochs into `trainer`; ([], no best) when starting afresh."""
        state_file = self.folder / "state.pt"
        if not state_file.exists() or self.overwrite:
            shutil.rmtree(self.folder, ignore_errors=True)
            return [], Best()
        fix = f"remove {self.folder} (or pass --overwrite) to train from the first epoch"
        state = read_weights(state_file, "a floodcache training state", fix)
        if not isinstance(state.get("identity"), dict):
            raise CheckpointError(
                f"{state_file} is not a whole training state (no identity); {fix}"
            )
        refuse_other(
            state["identity"],
            self.identity,
            f"{self.folder} holds an unfinished run with other settings",
            "rerun it with its own settings to finish it, or pass --overwrite",
            CacheError,
            ("run has", "asked"),
        )
        try:
            trainer.mask_decoder.load_state_dict(state["decoder"])
            trainer.optimizer.load_state_dict(state["optimizer"])
            trainer.scheduler.load_state_dict(state["scheduler"])
            history, best = [EpochStats(**h) for h in state["history"]], Best(**state["best"])
        except (KeyError, TypeError, ValueError, RuntimeError) as err:  # not what `save` wrote
            message = f"{state_file} is not a whole training state ({err!r}); {fix}"
            raise CheckpointError(message) from err
        log.info("resuming %s after epoch %d", self.folder, len(history))
        return history, best

    def save(self, trainer: DecoderTrainer, history: list[EpochStats], best: Best) -> None:
        state = {
            "identity": self.identity,
            "decoder": trainer.mask_decoder.state_dict(),
            "optimizer": trainer.optimizer.state_dict(),
            "scheduler": trainer.scheduler.state_dict(),
            "history": [asdict(h) for h in history],
            "best": best.to_dict(),
        }
        write_whole(self.folder / "state.pt", lambda tmp: save_weights(state, tmp))

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _fit(
    training: Training, progress: Progress, history: list[EpochStats], best: Best
) -> tuple[list[EpochStats], Best]:
    """Epochs len(history)+1 .. config.epochs; returns the history and the best epoch."""
    config, trainer, train_views = training.config, training.trainer, training.train_views
    bar = tqdm(
        total=config.epochs * len(train_views),
        initial=len(history) * len(train_views),
        unit="view",
        desc="train",
        disable=not config.progress,
        dynamic_ncols=True,
    )
    logged = estimated = False
    try:
        for epoch in range(len(history) + 1, config.epochs + 1):
            stats = _epoch(training, epoch, bar)
            if not logged:  # read by now: the first epoch used every view
                log.debug("embeddings read: train %s", train_views.load_line())
                log.debug("embeddings read: val %s", training.val_views.load_line())
                logged = True
            history.append(stats)
            left = config.epochs - epoch
            if not estimated and left and trainer.device.type == "cpu":  # minutes an epoch
                bar.write("train: " + estimate_line("epoch", 1, stats.seconds, left, cpu=True))
            estimated = True
            bar.write(
                f"epoch {epoch:3d}  train loss {stats.train_loss:.4f} IoU {stats.train_iou:.3f}"
                f"  val loss {stats.val_loss:.4f} IoU {stats.val_iou:.3f}  lr {stats.lr:.2e}"
            )
            what = _divergence(stats, trainer)
            if what is not None:  # before the best and the saved state: neither is kept
                raise Diverged(epoch, what, history, best)
            if stats.val_iou > best.val_iou:
                decoder = copy.deepcopy(trainer.mask_decoder.state_dict())
                best = Best(epoch, stats.val_iou, decoder)
            progress.save(trainer, history, best)
    finally:
        bar.close()
    return history, best


def _epoch(training: Training, epoch: int, bar: tqdm) -> EpochStats:
    """One epoch: a pass over the training views, the learning-rate step, validation."""
    trainer, strategies, config = training.trainer, training.strategies, training.config
    start = time.perf_counter()
    lr = trainer.optimizer.param_groups[0]["lr"]
    train_loss, train_iou, seen, skipped = trainer.run_epoch(
        strategies, training.train_views, config, epoch, train=True, bar=bar
    )
    trainer.scheduler.step()
    validating = time.perf_counter()
    val_loss, val_iou, _, _ = trainer.run_epoch(
        strategies, training.val_views, config, epoch, train=False
    )
    end = time.perf_counter()
    losses = (train_loss, train_iou, val_loss, val_iou, lr)
    return EpochStats(epoch, *losses, end - start, seen, skipped, end - validating)


def _save_run(
    config: TrainConfig,
    cache: Cache,
    history: list[EpochStats],
    best: Best,
    strategies: list[PromptStrategy],
    diverged: int | None = None,
) -> None:
    """The best epoch's decoder, the run's record and its history, as a run folder;
    `diverged`: the epoch training stopped at, its loss or weights not finite."""
    record = runs.RunRecord(
        model_type=cache.model_type,
        checkpoint_sha256=runs.checkpoint_sha256(cache),
        prompts=runs.RunRecord.prompts_of(strategies),
        config=config,
        cache_fingerprint=cache.fingerprint,
        best_epoch=best.epoch,
        best_val_iou=best.val_iou,
        diverged_epoch=diverged,
    )
    # one epoch sets it: any IoU (>= 0) beats Best's -1; a divergence saves only when set
    assert best.decoder is not None, "a run is saved after an epoch that set the best decoder"
    save_run(config.run_folder, best.decoder, record, [asdict(h) for h in history])
