"""What `evaluate` is asked (`EvaluateConfig`, checked when made). Torch- and polars-free, so
that the command line reads its defaults from here at once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from floodcache.prompts import PROMPTS, parse_prompts
from floodcache.settings import SPLITS, check_at_least, check_choice
from floodcache.utils.identity import setting


def _prompt_names(eval_prompts: str) -> list[str]:
    return [strategy.name for strategy in parse_prompts(eval_prompts)]


@dataclass
class EvaluateConfig:
    """Everything `evaluate` needs; each field says whether it makes the evaluation what it
    is, and that identity is stored beside the table it produces."""

    # identity=True: a change gives another table. The cache and the decoders are in the
    # identity by their fingerprint and sha256, not their paths (`evaluate.identity_of`).
    cache: Path = setting(Path("cache/flood.h5"), identity=False)  # the cache written by `embed`
    # metrics.parquet, metrics.csv, evaluation.json; default reports/<cache>
    out: Path | None = setting(None, identity=False)
    # fine-tuned run folders written by `train`
    decoders: tuple[Path, ...] = setting((), identity=False)
    # The evaluated strategies: every one, so that point vs box vs the rest show side by side;
    # recorded as their names, in order
    eval_prompts: str = setting(
        ",".join(PROMPTS), identity=True, record=_prompt_names, key="prompts"
    )
    split: str = setting("test", identity=True)
    seed: int = setting(0, identity=True)  # the prompt stream's seed
    points: int = setting(3, identity=True)  # k for the `points` strategy
    batch_size: int = setting(16, identity=False)  # views per decoder call
    device: str | None = setting(None, identity=False)
    # replace a finished evaluation made with other settings
    overwrite: bool = setting(False, identity=False)
    progress: bool = setting(True, identity=False)

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

    @property
    def folder(self) -> Path:
        """The evaluation folder: `out`, or its default."""
        assert self.out is not None, "__post_init__ resolves out"
        return Path(self.out)
