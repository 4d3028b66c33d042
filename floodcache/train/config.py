"""What `train` is asked (`TrainConfig`, checked when made). Torch-free, so that the command
line reads its defaults from here at once."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from floodcache.prompts import parse_prompts
from floodcache.settings import AUTO_PRECISION, check_at_least, check_precision
from floodcache.utils.identity import setting


@dataclass
class TrainConfig:
    """Everything `train` needs; saved beside the decoder it produces, each field saying
    whether it makes the run what it is.

    The learning rate and StepLR settings are those of the reference workflow, for batches of
    `batch_size` views; a larger batch takes fewer, larger steps per epoch."""

    # identity=True: a change gives another decoder, so `run` trains again and a resumed
    # run must match; the cache is in a run's identity by its fingerprint, not its path.
    cache: Path = setting(Path("cache/flood.h5"), identity=False)  # the cache written by `embed`
    # the run folder; default runs/<train_prompts joined by +>
    out: Path | None = setting(None, identity=False)
    # The training mix: one strategy or several, comma-separated (each view gets one of them
    # per epoch, in turn); by default one decoder for every prompt, prompt-free included
    train_prompts: str = setting("point,box,none", identity=True)
    # passes over the training views; the best on validation IoU is kept
    epochs: int = setting(15, identity=True)
    lr: float = setting(1e-4, identity=True)  # Adam
    step_size: int = setting(5, identity=True)  # StepLR: epochs between learning-rate drops
    gamma: float = setting(0.5, identity=True)  # StepLR: factor at each drop
    batch_size: int = setting(16, identity=True)  # views per decoder step
    seed: int = setting(0, identity=True)  # shuffling and random prompts
    points: int = setting(3, identity=True)  # k positive and k negative points for `points`
    box_jitter: float = setting(0.1, identity=True)  # training-time box noise (of the box side)
    device: str | None = setting(None, identity=False)
    overwrite: bool = setting(False, identity=False)
    progress: bool = setting(True, identity=False)
    # load the embeddings in RAM when they fit in this much
    memory_fraction: float = setting(0.5, identity=False)
    # The decoder's forward: fp32, or bf16 autocast (weights and loss stay fp32), or "auto":
    # bf16 on a GPU, fp32 on a CPU (`sam.precision.resolve_precision`); a run records it
    # resolved
    precision: str = setting(AUTO_PRECISION, identity=True)

    def __post_init__(self) -> None:
        """Refuse a setting no run could use, before any work is done; name the run folder."""
        names = [strategy.name for strategy in parse_prompts(self.train_prompts)]
        check_precision(self.precision, "train")
        for option, value, least in (
            ("--epochs", self.epochs, 1),
            ("--step-size", self.step_size, 1),
            ("--batch-size", self.batch_size, 1),
            ("--points", self.points, 1),
            ("--box-jitter", self.box_jitter, 0.0),
            ("--seed", self.seed, 0),
        ):
            check_at_least(value, least, option)
        for option, value in (("--lr", self.lr), ("--gamma", self.gamma)):
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{option} must be a finite number above 0, not {value!r}")
        if not math.isfinite(self.box_jitter):
            raise ValueError(f"--box-jitter must be a finite number, not {self.box_jitter!r}")
        if self.out is None:
            self.out = Path("runs") / "+".join(names)

    @property
    def run_folder(self) -> Path:
        """The run folder: `out`, or its default."""
        assert self.out is not None, "__post_init__ resolves out"
        return Path(self.out)
