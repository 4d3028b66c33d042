"""`predict` and `export`: a fine-tuned decoder used outside floodcache.

predict: a new image -> SAM's water mask, through segment-anything's own `SamPredictor` with
the run's mask decoder in place of the checkpoint's, from points, a box, or no prompt at all
(for a decoder trained on `none`: the one prompt a field deployment without ground truth has).

export: the full SAM checkpoint (a state dict of the whole `Sam` module, like the official
files) with `mask_decoder.*` replaced by the run's decoder, so that
`segment_anything.sam_model_registry[model_type](checkpoint=FILE)` loads the fine-tuned SAM.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from segment_anything import SamPredictor
from segment_anything.modeling import Sam

from floodcache import data
from floodcache.download import sha256_file
from floodcache.encoder import load_sam, pick_device
from floodcache.prompts import Prompt
from floodcache.runs import RANDOM_WEIGHTS, DecoderModel, check_same_sam, load_run

log = logging.getLogger(__name__)


@dataclass
class PredictConfig:
    """One image to segment with a fine-tuned decoder."""

    checkpoint: Path  # the SAM checkpoint the run's cache was embedded with
    decoder: Path  # run folder written by `train`
    image: Path
    out: Path  # the mask as PNG: 255 = water, 0 = not water, the image's size
    points: tuple[tuple[float, float], ...] = ()  # water clicks, XY original-image pixels
    background: tuple[tuple[float, float], ...] = ()  # not-water clicks, XY pixels
    box: tuple[float, float, float, float] | None = None  # XYXY original-image pixels
    device: str | None = None


@dataclass
class Prediction:
    mask: np.ndarray  # HxW bool, the image's size
    score: float  # SAM's predicted IoU of the mask
    prompt: Prompt  # in original-image pixels (empty: no prompt)
    out: Path


def sam_with_decoder(checkpoint: Path, run: Path) -> tuple[Sam, DecoderModel]:
    """The run's SAM (model type from its config.json) with the run's mask decoder loaded.

    The checkpoint must be the one the run's cache was embedded with (sha256 checked): the
    decoder learnt from that image encoder's embeddings. A run made with random weights
    accepts any checkpoint of its model type, with a warning.
    """
    model = load_run(run)
    model_type = model.record["model_type"]
    sam = load_sam(model_type, checkpoint)
    if model.record.get("checkpoint_sha256") == RANDOM_WEIGHTS:
        log.warning(
            "%s was trained on embeddings of an untrained SAM (random weights): its masks mean "
            "nothing, whatever checkpoint it is combined with",
            run,
        )
    else:
        check_same_sam(model, model_type, sha256_file(checkpoint), str(checkpoint))
    sam.mask_decoder.load_state_dict({k: torch.from_numpy(v) for k, v in model.state.items()})
    return sam.eval(), model


def user_prompt(config: PredictConfig) -> Prompt:
    """The prompt given on the command line, in original-image pixels (empty: none)."""
    clicks = [*config.points, *config.background]
    labels = [1] * len(config.points) + [0] * len(config.background)
    return Prompt(
        points=np.array(clicks, np.float32) if clicks else None,
        labels=labels if clicks else None,
        box=config.box,
    )


def run_predict(config: PredictConfig) -> Prediction:
    """Segment one image and write its mask PNG.

    A single click without a box is ambiguous: SAM's three masks are made and the one its IoU
    head rates best is kept (as the `point` strategy is evaluated); otherwise one mask.
    """
    sam, model = sam_with_decoder(config.checkpoint, config.decoder)
    prompt = user_prompt(config)
    if prompt.num_points == 0 and prompt.box is None and "none" not in model.trained_prompts:
        log.warning(
            "no prompt given, but %s was trained on %s, not `none`: its prompt-free masks are "
            "unreliable; give --point/--box, or train with --prompt including none",
            config.decoder,
            ", ".join(model.trained_prompts),
        )
    image, _ = data.read_image(config.image)
    predictor = SamPredictor(sam.to(pick_device(config.device)))
    predictor.set_image(image)
    multimask = prompt.num_points == 1 and prompt.box is None
    masks, scores, _ = predictor.predict(
        point_coords=None if prompt.points is None else np.array(prompt.points),
        point_labels=None if prompt.labels is None else np.array(prompt.labels),
        box=None if prompt.box is None else np.array(prompt.box),
        multimask_output=multimask,
    )
    best = int(np.argmax(scores))
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), masks[best].astype(np.uint8) * 255):
        raise ValueError(f"could not write {out}: give --out a .png path in a writable folder")
    return Prediction(masks[best], float(scores[best]), prompt, out)


@dataclass
class ExportConfig:
    checkpoint: Path  # the SAM checkpoint the run's cache was embedded with
    decoder: Path  # run folder written by `train`
    out: Path  # the merged checkpoint (.pth)
    overwrite: bool = False


def run_export(config: ExportConfig) -> Path:
    """Write the SAM checkpoint with the run's mask decoder merged in; returns its path."""
    out = Path(config.out)
    if out.exists() and not config.overwrite:
        raise FileExistsError(f"{out} exists; choose another --out, or pass --overwrite")
    sam, _ = sam_with_decoder(config.checkpoint, config.decoder)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    torch.save(sam.state_dict(), tmp)  # every Sam key, as the official checkpoints hold
    os.replace(tmp, out)
    return out
