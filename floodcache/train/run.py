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

import torch
from tqdm import tqdm

from floodcache.cache.format import CacheError
from floodcache.cache.reader import Cache
from floodcache.cache.verify import check_cache, check_views
from floodcache.prompts import parse_prompts
from floodcache.sam.checkpoints import CheckpointError
from floodcache.sam.model import read_weights, save_weights
from floodcache.sam.precision import pick_device, resolve_precision
from floodcache.train import runs
from floodcache.train.batches import Views, fits_in_memory
from floodcache.train.config import LEARNING_SETTINGS, TrainConfig
from floodcache.train.trainer import DecoderTrainer
from floodcache.train.weights import save_run
from floodcache.utils.atomic import write_whole
from floodcache.utils.differences import refuse_if_different
from floodcache.utils.estimate import estimate_line

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
    with runs.writing_run(config.out):
        return _train(config)


def _train(config: TrainConfig) -> TrainResult:
    runs.refuse_to_replace(config.out, config.overwrite)
    strategies = parse_prompts(config.train_prompts)
    # Recorded resolved: config.json and a resumed run say what actually ran.
    device = pick_device(config.device)
    config = replace(config, precision=resolve_precision(config.precision, device, "train"))
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
            trainer = DecoderTrainer(cache, config)
            progress = Progress(config, cache)
            history, best = progress.resume(trainer)
            history, best = _fit(trainer, strategies, *views, config, progress, history, best)
        finally:
            for split in views:
                split.close()
        _save_run(config, cache, history, best, strategies)
        progress.remove()
    return TrainResult(config.out, best.epoch, history)


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
        refuse_if_different(
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


def _fit(trainer, strategies, train_views, val_views, config, progress, history, best: Best):
    """Epochs len(history)+1 .. config.epochs; returns the history and the best epoch."""
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
            stats = _epoch(trainer, strategies, train_views, val_views, config, epoch, bar)
            if not logged:  # read by now: the first epoch used every view
                log.debug("embeddings read: train %s", train_views.load_line())
                log.debug("embeddings read: val %s", val_views.load_line())
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
            if stats.val_iou > best.val_iou:
                decoder = copy.deepcopy(trainer.mask_decoder.state_dict())
                best = Best(epoch, stats.val_iou, decoder)
            progress.save(trainer, history, best)
    finally:
        bar.close()
    return history, best


def _epoch(trainer, strategies, train_views, val_views, config, epoch: int, bar) -> EpochStats:
    """One epoch: a pass over the training views, the learning-rate step, validation."""
    start = time.perf_counter()
    lr = trainer.optimizer.param_groups[0]["lr"]
    train_loss, train_iou, seen, skipped = trainer.run_epoch(
        strategies, train_views, config, epoch, train=True, bar=bar
    )
    trainer.scheduler.step()
    validating = time.perf_counter()
    val_loss, val_iou, _, _ = trainer.run_epoch(strategies, val_views, config, epoch, train=False)
    end = time.perf_counter()
    losses = (train_loss, train_iou, val_loss, val_iou, lr)
    return EpochStats(epoch, *losses, end - start, seen, skipped, end - validating)


def _save_run(config, cache: Cache, history, best: Best, strategies) -> None:
    """The best epoch's decoder, the run's record and its history, as a run folder."""
    record = {
        "config": json.loads(json.dumps(asdict(config), default=str)),
        "prompts": {s.name: {"oracle": s.oracle, "multimask": s.multimask} for s in strategies},
        "cache_fingerprint": cache.fingerprint,
        "model_type": cache.model_type,
        "checkpoint_sha256": str(cache.file.attrs["checkpoint_sha256"]),
        "best_epoch": best.epoch,
        "best_val_iou": best.val_iou,
    }
    save_run(config.out, best.decoder, record, [asdict(h) for h in history])
