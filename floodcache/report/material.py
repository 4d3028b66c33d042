"""What the report's sections read (`Material`): the evaluation, the cache, the models, and
the masks decoded for the galleries; and what `report` returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from floodcache.cache.reader import Cache
from floodcache.data.audit import AuditReport
from floodcache.evaluate.evaluate import Decoders, recorded_masks
from floodcache.report.config import ReportConfig
from floodcache.train.runs import DecoderModel


@dataclass
class ReportResult:
    report: Path  # report.md
    figures: list[Path]
    evaluation: Path  # the evaluation folder it was made from
    reused: bool  # the evaluation was found complete, not recomputed


@dataclass
class Material:
    """Everything the sections read, and the figures they have written so far."""

    config: ReportConfig
    cache: Cache
    table: pl.DataFrame
    metadata: dict
    models: list[DecoderModel]
    summary: pl.DataFrame
    audit: AuditReport | None
    figures: list[Path] = field(default_factory=list)
    _masks: dict = field(default_factory=dict)
    _decoders: Decoders | None = None

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.models]

    @property
    def prompts(self) -> list[str]:
        return self.metadata["identity"]["prompts"]

    def figure(self, path: Path, caption: str) -> str:
        """Record a written figure; its markdown image line."""
        self.figures.append(path)
        return f"![{caption}]({path.relative_to(self.config.out).as_posix()})"

    def predict(self, model: str, records: list[dict]) -> None:
        """Decode `model` on table rows (one prompt strategy) not decoded yet, in one batch.

        Rows may come from another model: a view's prompt is the same for every model.
        """
        todo = [r for r in records if (model, r["prompt"], r["row"]) not in self._masks]
        if not todo:
            return
        if self._decoders is None:
            self._decoders = Decoders(self.cache, self.models, self.config.device)
        for record, mask in zip(
            todo, recorded_masks(self.cache, self._decoders, model, todo), strict=True
        ):
            self._masks[(model, record["prompt"], record["row"])] = mask

    def prediction(self, model: str, record: dict) -> np.ndarray:
        """HxW bool mask of `model` on a table row's view (decoded by `predict` if needed)."""
        self.predict(model, [record])
        return self._masks[(model, record["prompt"], record["row"])]
