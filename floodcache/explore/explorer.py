"""What the explorer shows and answers, from the cache, the evaluation and the decoders alone
(no image encoder runs): the table of every evaluated view, one view with its masks and
metrics, and both decoders' masks for a prompt of the user's own.

Opening checks what `train`, `evaluate` and `report` check, with their messages: a cache that
is damaged (`check_cache`), an evaluation that is not finished or was made from another cache,
and a run whose decoder changed since it was evaluated. Everything is opened to be read: the
explorer writes nothing.

A user's prompt is answered as `evaluate` answers its own (`answers`): the evaluated prompt
gives the table's IoU.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import polars as pl

from floodcache.cache.format import CacheError
from floodcache.cache.reader import Cache
from floodcache.cache.verify import check_cache
from floodcache.evaluate.metrics import METRICS
from floodcache.evaluate.table import load_evaluation, load_masks, prompt_from_row
from floodcache.explore.answers import PromptAnswers, overlay, shrink
from floodcache.explore.config import ExploreConfig
from floodcache.explore.findings import finding_text, view_findings
from floodcache.prompts import Prompt
from floodcache.sam.checkpoints import RANDOM_WEIGHTS
from floodcache.train.runs import PRETRAINED, DecoderModel
from floodcache.train.weights import decoder_models
from floodcache.utils.program import command, option

# RGB of each overlay: the ground truth, then the models in order (pretrained first)
TRUTH_COLOR = (0, 190, 255)
MODEL_COLORS = ((255, 150, 0), (235, 40, 200), (60, 220, 90), (250, 240, 60), (160, 110, 255))


class Explorer:
    """One cache, its evaluation and the evaluated decoders, open to be read.

    Safe to call from several threads: the decoders answer one prompt at a time.
    """

    def __init__(self, config: ExploreConfig):
        self.config = config
        self.cache = Cache.open(config.cache)
        try:
            check_cache(self.cache)
            self.table, self.metadata = load_evaluation(config.evaluation)
            self._check_same_cache()
            self.models = self._evaluated_models(config.decoders)
            self.masks = load_masks(config.evaluation)
            self.colors = {
                m.name: MODEL_COLORS[i % len(MODEL_COLORS)] for i, m in enumerate(self.models)
            }
            self.answers = PromptAnswers(self.cache, self.models, self.colors, config.device)
        except BaseException:
            self.cache.close()
            raise
        names = [m.name for m in self.models]
        self.table = self.table.filter(pl.col("model").is_in(names))
        self.rows = frozenset(self.table["row"].to_list())
        self.prompts = list(dict.fromkeys(self.table["prompt"].to_list()))

    def close(self) -> None:
        self.cache.close()

    def _check_same_cache(self) -> None:
        """The evaluation's cache must be this one: `report` refuses it with this message."""
        if self.cache.fingerprint != self.metadata["identity"]["cache_fingerprint"]:
            raise CacheError(
                f"{self.cache.path} is not the cache this evaluation was made from (fingerprints "
                "differ): pass the right --cache, or evaluate again with --overwrite"
            )

    def _evaluated_models(self, runs: tuple[Path, ...]) -> list[DecoderModel]:
        """`pretrained` and the runs (default: the evaluation's), each as it was evaluated."""
        evaluated = self.metadata["models"]
        if not runs:
            runs = tuple(Path(info["run"]) for info in evaluated.values() if info["run"])
        models = decoder_models(self.cache, runs)
        for model in models:
            info = evaluated.get(model.name)
            if info is None:
                raise ValueError(
                    f"{model.run} is not in the evaluation {self.config.evaluation} (it holds "
                    f"{', '.join(evaluated)}): evaluate it first, "
                    + command(
                        "evaluate",
                        option("cache"),
                        self.cache.path,
                        option("decoder"),
                        model.run,
                        option("out"),
                        self.config.evaluation,
                    )
                    + ", or leave --decoder out"
                )
            if model.sha256 != info["decoder_sha256"]:
                raise ValueError(
                    f"{info['run'] or model.name}'s decoder changed since the evaluation: "
                    "evaluate again ("
                    + command(
                        "report", option("cache"), "...", "--decoder ...", option("overwrite")
                    )
                    + ")"
                )
        return models

    @property
    def runs(self) -> list[DecoderModel]:
        return [m for m in self.models if m.name != PRETRAINED]

    def summary(self) -> dict:
        """What the page needs first: the models with their colours, the prompts, the warning."""
        return {
            "models": [{"name": name, "color": _css(color)} for name, color in self.colors.items()],
            "truth_color": _css(TRUTH_COLOR),
            "prompts": self.prompts,
            "random_weights": self.metadata["checkpoint_sha256"] == RANDOM_WEIGHTS,
            "split": self.metadata["identity"]["split"],
            "views": len(self.rows),
        }

    def table_rows(self) -> dict:
        """Every evaluated view: {"columns": [...], "rows": [[...], ...]}; its audit finding
        (`findings.view_findings`), per model and prompt its IoU, and per run and prompt its IoU
        minus pretrained's (null where skipped)."""
        first = self.table.filter(
            pl.col("model") == PRETRAINED, pl.col("prompt") == self.prompts[0]
        )
        wide = first.select("row", "image_id", "view", "split", "water_fraction").sort("row")
        findings = view_findings(self.cache, self.table)
        texts = [finding_text(findings[row]) for row in wide["row"].to_list()]
        wide = wide.with_columns(pl.Series("audit finding", texts, pl.String))
        for prompt in self.prompts:
            for model in self.models:
                wide = wide.join(self._iou(model.name, prompt), on="row", how="left")
            for run in self.runs:
                change = pl.col(f"{run.name} {prompt}") - pl.col(f"{PRETRAINED} {prompt}")
                wide = wide.with_columns(change.alias(f"change {run.name} {prompt}"))
        return {"columns": wide.columns, "rows": wide.rows()}

    def _iou(self, model: str, prompt: str) -> pl.DataFrame:
        chosen = self.table.filter(pl.col("model") == model, pl.col("prompt") == prompt)
        return chosen.select("row", pl.col("iou").alias(f"{model} {prompt}"))

    def image_jpeg(self, row: int) -> bytes:
        """The view's preview (longest side <= 512) as the cache stores it: JPEG bytes."""
        return bytes(np.asarray(self.cache.file["image_jpeg"][row]).tobytes())

    def view(self, row: int) -> dict:
        """One view: its columns, sizes, the ground truth as an overlay, and per prompt the
        evaluated prompt (original-image pixels), each model's metrics and evaluated mask."""
        records = self.table.filter(pl.col("row") == row)
        first = records.row(0, named=True)
        truth = self.cache.full_mask(row)
        preview = self.cache.image_preview(row).shape[:2]
        prompts = {}
        for prompt in self.prompts:
            rows = records.filter(pl.col("prompt") == prompt)
            evaluated = rows.row(0, named=True)
            prompts[prompt] = {
                "prompt": None if evaluated["skipped"] else prompt_from_row(evaluated).to_dict(),
                "models": {
                    record["model"]: self._evaluated(record, row, preview)
                    for record in rows.iter_rows(named=True)
                },
            }
        return {
            "row": row,
            "image_id": first["image_id"],
            "view": first["view"],
            "split": first["split"],
            "image_file": first["image_file"],
            "original_size": [first["height"], first["width"]],
            "preview_size": list(preview),
            "water_fraction": float(truth.mean()),
            "truth": overlay(shrink(truth, preview), TRUTH_COLOR),
            "prompts": prompts,
        }

    def _evaluated(self, record: dict, row: int, preview) -> dict | None:
        """A model's metrics and mask (an overlay) for one view and prompt; None if skipped."""
        if record["skipped"]:
            return None
        stored = self.masks.filter(
            pl.col("model") == record["model"], pl.col("prompt") == record["prompt"]
        ).filter(pl.col("row") == row)
        mask = cv2.imdecode(np.frombuffer(stored["mask_png"][0], np.uint8), cv2.IMREAD_GRAYSCALE)
        assert mask is not None, "the evaluation wrote each mask as a PNG"
        return {name: record[name] for name in (*METRICS, "predicted_iou")} | {
            "mask": overlay(shrink(mask, preview), self.colors[record["model"]])
        }

    def answer(self, row: int, prompt: Prompt) -> dict:
        """Every model's mask for `prompt` (original-image pixels) on the view's cached
        embedding (`PromptAnswers.answer`)."""
        return self.answers.answer(row, prompt)


def _css(color: tuple[int, int, int]) -> str:
    return "rgb({}, {}, {})".format(*color)
