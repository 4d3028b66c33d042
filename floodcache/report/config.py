"""What `report` is asked (`ReportConfig`, checked when made). Torch- and polars-free, so that
the command line reads its defaults from here at once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from floodcache.evaluate.config import EvaluateConfig
from floodcache.settings import check_at_least


@dataclass
class ReportConfig:
    """What `report` needs: an evaluation folder to read, or an evaluation to make first."""

    out: Path | None = None  # report.md and figures/; default reports/<cache>, or `metrics`
    metrics: Path | None = None  # the evaluation folder; default `out`
    # Evaluate first (a complete, matching evaluation in `metrics` is reused); None: read
    # the evaluation in `metrics`
    evaluate: EvaluateConfig | None = None
    gallery: int = 1  # worst, typical and best views, each, per model and prompt
    changes: int = 3  # views fine-tuning helped most (and hurt most), per run and prompt
    html: bool = False  # also report.html, the figures inside: one file to send

    def __post_init__(self) -> None:
        """Refuse a setting no report could use, before any work is done."""
        if self.evaluate is None and self.metrics is None:
            raise ValueError("pass --cache (to evaluate) or --metrics (an evaluation folder)")
        check_at_least(self.gallery, 1, "--gallery")
        check_at_least(self.changes, 0, "changes")
        if self.out is None:
            self.out = self.metrics if self.evaluate is None else self.evaluate.out
        if self.metrics is None:
            self.metrics = self.out

    @property
    def folder(self) -> Path:
        """The report folder: `out`, or its default."""
        assert self.out is not None, "__post_init__ resolves out"
        return Path(self.out)

    @property
    def metrics_folder(self) -> Path:
        """The evaluation folder read: `metrics`, or its default."""
        assert self.metrics is not None, "__post_init__ resolves metrics"
        return Path(self.metrics)

    @property
    def device(self) -> str | None:
        """Where the galleries' masks are decoded: the evaluation's device."""
        return self.evaluate.device if self.evaluate else None
