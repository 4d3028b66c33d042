"""`predict`: a fine-tuned decoder used outside floodcache, on new images.

A new image -> SAM's water mask with the run's mask decoder in place of the
checkpoint's, from points, a box, or no prompt at all (for a decoder trained on `none`: the one
prompt a field deployment without ground truth has). Images are encoded as `embed` encodes
them (the fast image encoder in batches, at embed's default precision: fp16 on CUDA)
and decoded as `evaluate` decodes them (`masks.predict_views`); the masks are SamPredictor's
up to that precision. A folder of images is segmented prompt-free, SAM loaded once, read ahead
in threads and encoded in batches, into a folder of masks and a table of each image's water
fraction (`run_predict_folder`). `run.run_predict` decides which.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np

from floodcache.data import decode
from floodcache.predict.config import ModelConfig, PhotoConfig
from floodcache.predict.mask_score import with_score
from floodcache.prompts import NO_PROMPT, Prompt
from floodcache.runtime import Runtime
from floodcache.sam.batch_encoder import BatchEncoder, default_batch_size
from floodcache.sam.masks import predict_views, view_logits
from floodcache.sam.preprocess import resize_to_input
from floodcache.train.runs import DecoderModel
from floodcache.train.weights import sam_with_decoder
from floodcache.utils.atomic import write_whole
from floodcache.utils.program import option

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Prediction:
    mask: np.ndarray  # HxW bool, the image's size
    score: float  # SAM's predicted IoU of the mask
    prompt: Prompt  # in original-image pixels (empty: no prompt)
    out: Path


def user_prompt(config: PhotoConfig) -> Prompt:
    """The prompt given on the command line, in original-image pixels (empty: none)."""
    clicks = [*config.points, *config.background]
    labels = [1] * len(config.points) + [0] * len(config.background)
    return Prompt(
        points=np.array(clicks, np.float32) if clicks else None,
        labels=np.array(labels) if clicks else None,
        box=None if config.box is None else np.array(config.box, np.float32),
    )


def run_predict_photo(config: PhotoConfig) -> Prediction:
    """Segment one image and write its mask PNG."""
    out = Path(config.out)
    if out.suffix.lower() != ".png":
        raise ValueError(f"{out}: the mask is written as PNG; give --out a .png path")
    if out.exists() and out.resolve() == Path(config.image).resolve():
        raise ValueError(f"--out {out} is the image itself: give the mask another name")
    if out.exists() and not config.overwrite:
        raise FileExistsError(f"{out} exists; choose another --out, or pass --overwrite")
    image, _ = decode.read_image(config.image, config.max_pixels)
    config.check_inside(*image.shape[:2])  # before SAM is loaded, for nothing
    runtime = Runtime.resolve(config.model.device, config.model.precision)
    segmenter = Segmenter(config.model, runtime)
    prompt = user_prompt(config)
    if prompt.num_points == 0 and prompt.box is None:
        warn_if_not_prompt_free(segmenter.model, config.model.decoder)
    ((mask, score),) = segmenter([(resize_to_input(image), image.shape[:2])], [prompt])
    write_mask(out, mask)
    return Prediction(mask, score, prompt, out)


class Segmenter:
    """The run's SAM, segmenting images as `embed` encodes and `evaluate` decodes them.

    The fast image encoder runs in batches (`BatchEncoder`: at most `batch_size` images, what
    fits the device's free memory, halved on running out of it), at embed's default precision
    (`runtime.precision`, resolved from auto: fp16 on CUDA; on a CPU bf16 where native, else
    fp32), so the decoder sees embeddings made as its cache's were; compiled on CUDA for 10000
    images or more, as embed is.
    """

    def __init__(self, config: ModelConfig, runtime: Runtime, images: int = 1):
        self.sam, self.model = sam_with_decoder(
            config.checkpoint, config.decoder, config.random_weights
        )
        self.device, self.precision = runtime.device, runtime.precision
        self.sam.to(self.device)
        model_type = self.model.run_record.model_type
        batch = default_batch_size(self.device, model_type, self.precision)
        self.encoder = BatchEncoder(
            self.sam, self.device, model_type, self.precision, batch_size=batch, views=images
        )

    @property
    def batch_size(self) -> int:
        return self.encoder.batch_size

    def __call__(
        self, images: list[tuple[np.ndarray, tuple[int, int]]], prompts: list[Prompt]
    ) -> list[tuple[np.ndarray, float]]:
        """(hxwx3 uint8 RGB resized to SAM's input (`resize_to_input`), (H, W) original size)
        per image, and its prompt in original-image pixels -> (HxW bool water mask, SAM's
        predicted IoU of it) per image.

        A single click without a box is ambiguous: SAM's three masks are made and the one its
        IoU head rates best is kept (as the `point` strategy is evaluated); otherwise one mask.
        The prompts of one call must all be ambiguous or all not.
        """
        multimask = {prompt.num_points == 1 and prompt.box is None for prompt in prompts}
        if len(multimask) != 1:
            raise ValueError("segment single clicks and other prompts in separate calls")
        embeddings, views = self._encode(images)
        made = predict_views(
            self.sam.prompt_encoder,
            self.sam.mask_decoder,
            embeddings,
            views,
            prompts,
            multimask.pop(),
        )
        return [_prompted(each) for each in made]

    def logits(self, images: list[tuple[np.ndarray, tuple[int, int]]]) -> list[np.ndarray]:
        """Prompt-free: (hxwx3 uint8 resized to SAM's input, (H, W) original size) per image ->
        HxW float32 logits at the original size (water where > 0), as `__call__` thresholds."""
        embeddings, views = self._encode(images)
        decoder = self.sam.prompt_encoder, self.sam.mask_decoder
        made = view_logits(*decoder, embeddings, views, [NO_PROMPT] * len(images), False)
        return [_prompted(each)[0].cpu().numpy() for each in made]

    def _encode(self, images: list[tuple[np.ndarray, tuple[int, int]]]) -> tuple:
        """The images' embeddings, and their input and original sizes as the decoder's
        postprocessing takes them."""
        views = {
            "input_size": [resized.shape[:2] for resized, _ in images],
            "original_size": [size for _, size in images],
        }
        return self.encoder([resized for resized, _ in images]), views


def warn_if_not_prompt_free(model: DecoderModel, run: Path) -> None:
    if "none" not in model.trained_prompts:
        log.warning(
            "no prompt given, but %s was trained on %s, not `none`: its prompt-free masks are "
            f"unreliable; give --point/--box, or train with {option('train_prompts')} including "
            "none",
            run,
            ", ".join(model.trained_prompts),
        )


def write_mask(out: Path, mask: np.ndarray, score: float | None = None) -> None:
    """Write an HxW bool mask as a PNG (255 = water), whole or not at all (`write_whole`);
    with SAM's predicted IoU `score` inside it (`mask_score`), where given."""
    ok, png = cv2.imencode(".png", mask.astype(np.uint8) * 255)
    assert ok, "OpenCV failed to encode an in-memory mask"
    data = png.tobytes() if score is None else with_score(png.tobytes(), score)
    write_whole(out, lambda tmp: tmp.write_bytes(data))


def _prompted(made: T | None) -> T:
    """A view's mask: never None here, as every image has a prompt (empty: prompt-free)."""
    assert made is not None, "every image is given a prompt"
    return made
