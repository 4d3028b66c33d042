"""What `evaluate` is asked (`EvaluateConfig`, checked when made). Torch- and polars-free, so
that the command line reads its defaults from here at once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from floodcache.prompts import PROMPTS, parse_prompts
from floodcache.settings import SPLITS, check_at_least, check_choice


@dataclass
class EvaluateConfig:
    """Everything `evaluate` needs; its identity is stored beside the table it produces."""

    cache: Path = Path("cache/flood.h5")  # the cache written by `embed`
    out: Path | None = (
        None  # metrics.parquet, metrics.csv, evaluation.json; default reports/<cache>
    )
    decoders: tuple[Path, ...] = ()  # fine-tuned run folders written by `train`
    # The evaluated strategies: every one, so that point vs box vs the rest show side by side
    eval_prompts: str = ",".join(PROMPTS)
    split: str = "test"
    seed: int = 0  # the prompt stream's seed
    points: int = 3  # k for the `points` strategy
    batch_size: int = 16  # views per decoder call
    device: str | None = None
    overwrite: bool = False  # replace a finished evaluation made with other settings
    progress: bool = True

    def __post_init__(self) -> None:
        """Refuse a setting no evaluation could use, before any work is done."""
        parse_prompts(self.eval_prompts)
        check_choice(self.split, SPLITS, "--split")
        check_at_least(self.points, 1, "--points")
        check_at_least(self.batch_size, 1, "--batch-size")
        check_at_least(self.seed, 0, "--seed")
        self.decoders = tuple(Path(run) for run in self.decoders)
        if self.out is None:
            self.out = Path("reports") / Path(self.cache).stem
