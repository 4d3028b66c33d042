"""What the report's sections read (`Material`): the evaluation, its masks, the cache and the
models; and what `report` returns. Nothing here decodes again: the galleries show the masks
the evaluation kept."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import polars as pl

from floodcache.cache.reader import Cache
from floodcache.data.audit import AuditReport
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
    masks: pl.DataFrame  # the evaluation's masks (`evaluate.table.MASKS_SCHEMA`)
    figures: list[Path] = field(default_factory=list)
    _index: dict | None = None  # (model, prompt, row) -> PNG bytes

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

    def prediction(self, model: str, record: dict) -> np.ndarray:
        """hxw bool: the mask `model` made for a table row's view and prompt, at the size of
        the view's preview. Rows may come from another model: a view's prompt is the same
        for every model."""
        if self._index is None:
            keys = zip(*(self.masks[name] for name in ("model", "prompt", "row")), strict=True)
            self._index = dict(zip(keys, self.masks["mask_png"], strict=True))
        png = np.frombuffer(self._index[(model, record["prompt"], record["row"])], np.uint8)
        return cv2.imdecode(png, cv2.IMREAD_GRAYSCALE) > 0
