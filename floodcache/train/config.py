"""What `train` is asked (`TrainConfig`, checked when made). Torch-free, so that the command
line reads its defaults from here at once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from floodcache.prompts import parse_prompts
from floodcache.settings import AUTO_PRECISION, check_at_least, check_precision


@dataclass
class TrainConfig:
    """Everything `train` needs; saved beside the decoder it produces.

    The learning rate and StepLR settings are those of the reference workflow, for batches of
    `batch_size` views; a larger batch takes fewer, larger steps per epoch."""

    cache: Path = Path("cache/flood.h5")  # the cache written by `embed`
    out: Path | None = None  # the run folder; default runs/<train_prompts joined by +>
    # The training mix: one strategy or several, comma-separated (each view gets one of them
    # per epoch, in turn); by default one decoder for every prompt, prompt-free included
    train_prompts: str = "point,box,none"
    epochs: int = 15  # passes over the training views; the best on validation IoU is kept
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
    # bf16 on a GPU, fp32 on a CPU (`sam.precision.resolve_precision`)
    precision: str = AUTO_PRECISION

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
        ):
            check_at_least(value, least, option)
        for option, value in (("--lr", self.lr), ("--gamma", self.gamma)):
            if not value > 0:
                raise ValueError(f"{option} must be above 0, not {value!r}")
        if self.out is None:
            self.out = Path("runs") / "+".join(names)


# TrainConfig fields that change what a run learns (not where it goes or how it is shown);
# `run` keeps a finished run that matches them, and a resumed run must match them too.
LEARNING_SETTINGS = ("train_prompts", "epochs", "lr", "step_size", "gamma", "batch_size", "seed")
LEARNING_SETTINGS += ("points", "box_jitter")
