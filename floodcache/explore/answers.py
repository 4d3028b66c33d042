"""Every decoder's answer to a prompt on one cached view, as `evaluate` makes its own: the
decoders of `evaluate.Decoders` (the decoder maths of `sam`, so another model family answers
through the same interface), SAM's postprocessing (`masks.full_masks`), the pixel counts of
`evaluate.batch`. No image encoder runs: the view's embedding is read from the cache, checked
as `evaluate` checks it, and kept for the next prompt on the same view.

What does not depend on the model is done once: the prompt is encoded once for all decoders
(they share the cache's prompt encoder) and its dense positional encoding once for all prompts.
The live IoU is counted at the original size when the view has at most FULL_SIZE_PIXELS
pixels, so the evaluated prompt gives the evaluation's IoU; a larger view is answered at its
preview size (SAM's logits resized to it, against the ground truth shrunk to it), as counting
ten million pixels per click would keep the user waiting.
"""

from __future__ import annotations

import base64
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

from floodcache.cache.reader import Cache
from floodcache.evaluate.batch import _pixel_counts
from floodcache.evaluate.evaluate import Decoders
from floodcache.evaluate.metrics import metrics_from_counts
from floodcache.prompts import Prompt
from floodcache.sam.decoder import EncodedPrompts, decode_encoded, encode_prompts, pick_by_iou
from floodcache.sam.masks import full_masks, input_prompt
from floodcache.train.runs import DecoderModel

OVERLAY_ALPHA = 120  # of 255: the image stays readable under two or three overlays
KEPT_VIEWS = 8  # embeddings kept in memory: the views a user steps between
# larger views get their live IoU at preview size: SAM's padded 1024 square, which every
# answer is upsampled to anyway, bounds the cost of the full-size masks and counts
FULL_SIZE_PIXELS = 1024 * 1024


@dataclass
class CachedView:
    """What every prompt on one view needs, read from the cache once."""

    embedding: torch.Tensor  # 1x256x64x64 float on the decoders' device
    # hxw bool on that device: the ground truth at `iou_size`, what live IoUs count against
    truth: torch.Tensor
    preview_size: tuple[int, int]  # (h, w) of the cache's preview: the overlays' size
    iou_size: tuple[int, int]  # (h, w): the original size, or the preview's for a large view
    iou_at: str  # "original" or "preview", said on the page


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
        with torch.inference_mode():
            # 1x256x64x64, the same for every view and prompt
            prompt_encoder: Any = self.decoders.prompt_encoder  # segment-anything's: untyped
            self._image_pe = prompt_encoder.get_dense_pe()
        self._lock = threading.Lock()
        self._views: OrderedDict[int, CachedView] = OrderedDict()

    def answer(self, row: int, prompt: Prompt) -> dict:
        """{"row", "multimask", "iou_at", "models": {name: {"mask": overlay at preview size,
        "iou", "dice", "precision", "recall", "water_fraction", "predicted_fraction",
        "predicted_iou"}}} for `prompt` in original-image pixels. Metrics are against the
        view's ground truth at the size "iou_at" names (module docstring); one point alone is
        ambiguous, so SAM's best of its three masks answers it, as in `evaluate`."""
        height, width = (int(s) for s in self.cache.column("original_size")[row])
        original_size = (height, width)
        input_size = tuple(int(s) for s in self.cache.column("input_size")[row])
        multimask = prompt.num_points == 1 and prompt.box is None
        with self._lock, torch.inference_mode():
            view = self._view(row)
            encoded = self._encode(input_prompt(prompt, original_size))
            answers = {}
            for model in self.models:
                decoder = self.decoders.mask_decoders[model.name]
                logits, iou = decode_encoded(decoder, view.embedding, encoded, multimask)
                lowres, scores = pick_by_iou(logits, iou)
                mask = full_masks(lowres, [input_size], [view.iou_size])[0]
                counts = _pixel_counts([mask], [view.truth])[0].tolist()
                answers[model.name] = metrics_from_counts(*counts) | {
                    "predicted_iou": float(scores[0, 0]),
                    "mask": overlay(
                        shrink(mask.cpu().numpy(), view.preview_size), self.colors[model.name]
                    ),
                }
        return {"row": row, "multimask": multimask, "iou_at": view.iou_at, "models": answers}

    def _encode(self, prompt: Prompt) -> EncodedPrompts:
        """One prompt in SAM's 1024 frame, encoded as `sam.decoder.encode` does, for every
        decoder."""
        sparse, dense = encode_prompts(self.decoders.prompt_encoder, [prompt], pad_points=True)
        return EncodedPrompts(sparse, dense, self._image_pe)

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
            truth = self.cache.full_mask(row)
            preview = tuple(self.cache.image_preview(row).shape[:2])
            small = truth.size <= FULL_SIZE_PIXELS
            iou_size = tuple(truth.shape[:2]) if small else preview
            self._views[row] = CachedView(
                torch.from_numpy(array).float().to(device),
                torch.from_numpy(shrink(truth, iou_size)).bool().to(device),
                preview,
                iou_size,
                "original" if small or iou_size == tuple(truth.shape[:2]) else "preview",
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
