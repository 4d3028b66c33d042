"""What the report's sections read (`Material`): the evaluation, its masks, the cache, the
models and the audit, with the intervals and paired comparisons of the evaluation's means;
and what `report` returns. Nothing here decodes again: the galleries show the masks the
evaluation kept."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import cv2
import numpy as np
import polars as pl

from floodcache.cache.reader import Cache
from floodcache.report import markdown, statistics
from floodcache.report.config import ReportConfig
from floodcache.train.runs import PRETRAINED, DecoderModel


@dataclass
class ReportResult:
    report: Path  # report.md
    figures: list[Path]
    evaluation: Path  # the evaluation folder it was made from
    reused: bool  # the evaluation was found complete, not recomputed
    html: Path | None = None  # report.html, when asked for


@dataclass
class Material:
    """Everything the sections read, and the figures they have written so far."""

    config: ReportConfig
    cache: Cache
    table: pl.DataFrame
    metadata: dict
    models: list[DecoderModel]
    audit: dict | None  # the cache's record of its data's audit (`audit_record`); None: none
    masks: pl.DataFrame  # the evaluation's masks (`evaluate.table.MASKS_SCHEMA`)
    figures: list[Path] = field(default_factory=list)
    _index: dict | None = None  # (model, prompt, row) -> PNG bytes
    _ious: dict | None = None  # (model, prompt, row) -> IoU
    _statistics: dict = field(default_factory=dict)  # (how, model, prompt, metric) -> result

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.models]

    @property
    def prompts(self) -> list[str]:
        return self.metadata["identity"]["prompts"]

    @property
    def runs(self) -> list[DecoderModel]:
        """The fine-tuned models, each compared with `pretrained`."""
        return [m for m in self.models if m.run is not None]

    def relative(self, path: Path | str) -> str:
        """`path` as a link from the report's folder."""
        return Path(os.path.relpath(Path(path).resolve(), self.config.folder.resolve())).as_posix()

    def evaluated(self, model: str, prompt: str) -> pl.DataFrame:
        """`model`'s rows for `prompt` that were evaluated (not skipped), in view order."""
        rows = self.table.filter(
            (pl.col("model") == model) & (pl.col("prompt") == prompt) & ~pl.col("skipped")
        )
        return rows.sort("row")

    def interval(self, model: str, prompt: str, metric: str) -> statistics.Interval | None:
        """The mean of `metric` over the evaluated views with its 95% bootstrap interval."""
        key = ("interval", model, prompt, metric)
        if key not in self._statistics:
            values = self.evaluated(model, prompt)[metric].to_numpy()
            self._statistics[key] = statistics.bootstrap(values)
        return self._statistics[key]

    def paired(self, model: str, prompt: str, metric: str) -> statistics.Paired | None:
        """`model` minus `pretrained` on the same views with the same prompt."""
        key = ("paired", model, prompt, metric)
        if key not in self._statistics:
            mine, base = self.evaluated(model, prompt), self.evaluated(PRETRAINED, prompt)
            if not mine["row"].equals(base["row"]):
                raise ValueError(f"{model} and {PRETRAINED} were evaluated on different views")
            compared = statistics.paired(base[metric].to_numpy(), mine[metric].to_numpy())
            self._statistics[key] = compared
        return self._statistics[key]

    def ious(self, record: dict) -> dict[str, float]:
        """Each model's IoU on a table row's view with its prompt."""
        if self._ious is None:
            evaluated = self.table.filter(~pl.col("skipped"))
            keys = zip(*(evaluated[name] for name in ("model", "prompt", "row")), strict=True)
            self._ious = dict(zip(keys, evaluated["iou"], strict=True))
        return {m: self._ious[(m, record["prompt"], record["row"])] for m in self.names}

    def figure(self, path: Path, caption: str) -> str:
        """Record a written figure; its markdown image line."""
        self.figures.append(path)
        return f"![{markdown.text(caption)}]({quote(self.relative(path), safe='/+')})"

    def prediction(self, model: str, record: dict) -> np.ndarray:
        """hxw bool: the mask `model` made for a table row's view and prompt, at the size of
        the view's preview. Rows may come from another model: a view's prompt is the same
        for every model."""
        if self._index is None:
            keys = zip(*(self.masks[name] for name in ("model", "prompt", "row")), strict=True)
            self._index = dict(zip(keys, self.masks["mask_png"], strict=True))
        png = np.frombuffer(self._index[(model, record["prompt"], record["row"])], np.uint8)
        mask = cv2.imdecode(png, cv2.IMREAD_GRAYSCALE)
        assert mask is not None, "the evaluation wrote each mask as a PNG"
        return mask > 0
