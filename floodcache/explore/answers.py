"""Every decoder's answer to a prompt on one cached view, as `evaluate` makes its own: the
decoders of `evaluate.Decoders` (the decoder maths of `sam`, so another model family answers
through the same interface), SAM's postprocessing to the original size (`masks.full_masks`),
the pixel counts of `evaluate.batch`. No image encoder runs: the
view's embedding is read from the cache, checked as `evaluate` checks it, and kept for the next
prompt on the same view.
"""

from __future__ import annotations

import base64
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from floodcache.cache.reader import Cache
from floodcache.evaluate.batch import _pixel_counts
from floodcache.evaluate.evaluate import Decoders
from floodcache.evaluate.metrics import metrics_from_counts
from floodcache.prompts import Prompt
from floodcache.sam.masks import full_masks
from floodcache.train.runs import DecoderModel

OVERLAY_ALPHA = 120  # of 255: the image stays readable under two or three overlays
KEPT_VIEWS = 8  # embeddings kept in memory: the views a user steps between


@dataclass
class CachedView:
    """What every prompt on one view needs, read from the cache once."""

    embedding: torch.Tensor  # 1x256x64x64 float on the decoders' device
    truth: torch.Tensor  # HxW bool, the full-resolution ground truth, on that device
    preview_size: tuple[int, int]  # (h, w) of the cache's preview: the overlays' size


class PromptAnswers:
    """The decoders of `models` on `device`, answering prompts on the views of `cache`.

    Safe to call from several threads: one prompt is answered at a time, so that answers do not
    compete for the CPU's cores.
    """

    def __init__(
        self,
        cache: Cache,
        models: list[DecoderModel],
        colors: dict[str, tuple[int, int, int]],
        device: str | None = None,
    ):
        self.cache = cache
        self.models = models
        self.colors = colors  # RGB of each model's overlay
        self.decoders = Decoders(cache, models, device)
        self._lock = threading.Lock()
        self._views: OrderedDict[int, CachedView] = OrderedDict()

    def answer(self, row: int, prompt: Prompt) -> dict:
        """{"row", "multimask", "models": {name: {"mask": overlay at preview size, "iou",
        "dice", "precision", "recall", "water_fraction", "predicted_fraction",
        "predicted_iou"}}} for `prompt` in original-image pixels. Metrics are against the
        view's full-resolution ground truth; one point alone is ambiguous, so SAM's best of its
        three masks answers it, as in `evaluate`."""
        height, width = (int(s) for s in self.cache.column("original_size")[row])
        views: dict[str, list[tuple[int, ...]]] = {
            "original_size": [(height, width)],
            "input_size": [tuple(int(s) for s in self.cache.column("input_size")[row])],
        }
        multimask = prompt.num_points == 1 and prompt.box is None
        with self._lock, torch.inference_mode():
            view = self._view(row)
            answers = {}
            for model in self.models:
                _, lowres, scores = self.decoders.decode(
                    model.name, view.embedding, views, [prompt], multimask
                )
                mask = full_masks(lowres, views["input_size"], views["original_size"])[0]
                counts = _pixel_counts([mask], [view.truth])[0].tolist()
                answers[model.name] = metrics_from_counts(*counts) | {
                    "predicted_iou": float(scores[0]),
                    "mask": overlay(
                        shrink(mask.cpu().numpy(), view.preview_size), self.colors[model.name]
                    ),
                }
        return {"row": row, "multimask": multimask, "models": answers}

    def _view(self, row: int) -> CachedView:
        """The view's embedding, checked against its sha256 as `evaluate` reads it, and its
        ground truth, read once for all the prompts on it; the last KEPT_VIEWS are kept."""
        if row not in self._views:
            loader = self.cache.load_embeddings(np.array([row]))
            try:
                loader.wait(1)
                array = np.array(loader.array[:1])
            finally:
                loader.close()
            device = self.decoders.device
            self._views[row] = CachedView(
                torch.from_numpy(array).float().to(device),
                torch.from_numpy(self.cache.full_mask(row)).bool().to(device),
                self.cache.image_preview(row).shape[:2],
            )
            while len(self._views) > KEPT_VIEWS:
                self._views.popitem(last=False)
        self._views.move_to_end(row)
        return self._views[row]


def shrink(mask: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """HxW {0,1} (uint8 or bool) -> hxw uint8 {0,1} (nearest), the size of the view's preview;
    OpenCV's nearest resize, as a full-resolution mask can hold ten million pixels."""
    mask = mask.view(np.uint8) if mask.dtype == bool else mask
    if mask.shape[:2] == tuple(size):
        return mask
    return cv2.resize(mask, (int(size[1]), int(size[0])), interpolation=cv2.INTER_NEAREST)


def overlay(mask: np.ndarray, color: tuple[int, int, int]) -> str:
    """hxw {0,1} -> a data: URL of an RGBA PNG, `color` where the mask is set, clear elsewhere."""
    rgba = np.zeros((*mask.shape[:2], 4), np.uint8)
    rgba[mask > 0] = (color[2], color[1], color[0], OVERLAY_ALPHA)  # OpenCV writes BGRA
    ok, png = cv2.imencode(".png", rgba)
    assert ok, "OpenCV failed to encode an in-memory overlay"
    return "data:image/png;base64," + base64.b64encode(png.tobytes()).decode("ascii")
