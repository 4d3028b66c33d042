"""SAM model building, SAM-exact preprocessing, and the batched image-encoder forward
(`batch_encoder` sizes the batches to the device and streams them).

Preprocessing follows `SamPredictor.set_image` for numpy input exactly: segment-anything's
`ResizeLongestSide.apply_image` (PIL resize of the uint8 image, longest side 1024), then
`Sam.preprocess` (normalise on the 0..255 scale, zero-pad bottom/right to 1024x1024).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from segment_anything.build_sam import _build_sam
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide

from floodcache.choices import AUTO_PRECISION, MODEL_TYPES, PRECISIONS
from floodcache.download import CHECKPOINTS, CheckpointError, find_checkpoint, sha256_file
from floodcache.fast_encoder import compile_wanted, fast_image_encoder

IMAGE_SIZE = 1024  # SAM's encoder input side
LOWRES_SIZE = 256  # the mask decoder's low-res logits side, covering the padded 1024 square
log = logging.getLogger(__name__)


def build_sam(model_type: str = "vit_b") -> Sam:
    """A SAM model of `model_type` with random weights, in eval mode, on the CPU."""
    if model_type not in MODEL_TYPES:
        raise ValueError(
            f"unknown model type {model_type!r}; choose one of {', '.join(MODEL_TYPES)}"
        )
    spec = MODEL_TYPES[model_type]
    return _build_sam(
        encoder_embed_dim=spec.embed_dim,
        encoder_depth=spec.depth,
        encoder_num_heads=spec.num_heads,
        encoder_global_attn_indexes=list(spec.global_attn_indexes),
        checkpoint=None,
    )


def load_sam(model_type: str, checkpoint: Path) -> Sam:
    """Build SAM of `model_type` and load `checkpoint` (a state dict of the whole `Sam` module).

    Raises CheckpointError naming the file and what to do when it is missing, unreadable
    (truncated download), not a SAM state dict, or of another model type.
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise CheckpointError(
            f"checkpoint {checkpoint} does not exist: fetch it with "
            f"`python cli.py download --model-type {model_type}` or pass --checkpoint FILE"
        )
    try:
        state_dict = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a damaged zip/pickle
        raise CheckpointError(
            f"checkpoint {checkpoint} cannot be read ({type(err).__name__}: {err}); it is "
            "probably truncated or not a PyTorch file: download it again with "
            f"`python cli.py download --model-type {model_type}`"
        ) from err
    if not isinstance(state_dict, dict) or not any(
        str(k).startswith("image_encoder.") for k in state_dict
    ):
        raise CheckpointError(
            f"{checkpoint} is not a SAM checkpoint: expected a state dict with "
            "image_encoder.*, prompt_encoder.* and mask_decoder.* keys"
        )
    sam = build_sam(model_type)
    try:
        sam.load_state_dict(state_dict)
    except RuntimeError as err:
        found = guess_model_type(state_dict)
        hint = f" it looks like a {found} checkpoint: pass --model-type {found}" if found else ""
        raise CheckpointError(
            f"{checkpoint} does not fit SAM {model_type};{hint or ' ' + str(err)[:300]}"
        ) from err
    return sam


def guess_model_type(state_dict: dict) -> str | None:
    """The registered model type whose encoder width and depth match a state dict, if any."""
    weight = state_dict.get("image_encoder.patch_embed.proj.weight")
    if weight is None:
        return None
    depth = 1 + max(
        (int(k.split(".")[2]) for k in state_dict if k.startswith("image_encoder.blocks.")),
        default=-1,
    )
    for name, spec in MODEL_TYPES.items():
        if spec.embed_dim == weight.shape[0] and spec.depth == depth:
            return name
    return None


def load_or_random_sam(
    model_type: str, checkpoint: Path | None, random_weights: bool
) -> tuple[Sam, str]:
    """SAM and the sha256 of its checkpoint, or random weights when explicitly asked for.

    Without `checkpoint`, the official file is looked for in the default checkpoint folder
    (CheckpointNotFound says how to download it).

    Random weights (seeded, so smoke runs repeat) record the marker "random-weights" instead of
    a sha256, and warn loudly: every number computed with them is meaningless.
    """
    if random_weights and checkpoint is not None:
        raise CheckpointError("pass either --checkpoint or --random-weights, not both")
    if not random_weights:
        if model_type in CHECKPOINTS:  # official weights exist: look in the default place
            checkpoint = find_checkpoint(model_type, checkpoint)
        elif checkpoint is None:
            raise CheckpointError(
                f"{model_type} has no official checkpoint: pass --checkpoint FILE, or "
                "--random-weights for a smoke test whose numbers mean nothing"
            )
        return load_sam(model_type, checkpoint), sha256_file(Path(checkpoint))
    warn_random_weights()
    torch.manual_seed(0)  # the same random SAM every time, so smoke runs are reproducible
    return build_sam(model_type), "random-weights"


def warn_random_weights() -> None:
    """Say loudly that a run uses an untrained SAM."""
    log.warning(
        "\n%s\nRANDOM WEIGHTS: this SAM was never trained. Embeddings, masks and metrics "
        "computed with it are MEANINGLESS; use it only to test the pipeline.\n%s",
        "!" * 78,
        "!" * 78,
    )


def resize_to_input(image: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB -> hxwx3 uint8, longest side 1024, exactly as SamPredictor.set_image.

    An image already at that size (every augmented view: `views.view_base`) comes back as
    it is: PIL would only copy it."""
    if input_size(image.shape[:2]) == image.shape[:2]:
        return image
    return ResizeLongestSide(IMAGE_SIZE).apply_image(image)


def input_size(original_size: tuple[int, int]) -> tuple[int, int]:
    """(h, w) of the resized image inside the padded 1024 square, for an (H, W) original."""
    return tuple(ResizeLongestSide.get_preprocess_shape(*original_size, IMAGE_SIZE))


def lowres_target(mask: np.ndarray) -> np.ndarray:
    """HxW {0,1} mask -> 256x256 uint8 {0,1} target in the decoder's padded low-res frame.

    Built like the image: resize longest side to 1024 (PIL bilinear, as ResizeLongestSide
    resizes each channel of an image), pad bottom/right to 1024, then 4x4 area-average down to
    256 and threshold at one half. The averages are integer sums of the grey values; a block
    at exactly half is decided by the float32 mean of values/255 that the targets of every
    cache so far came from (its rounding sends some below one half): 8.8 -> 3.7 ms a view.
    """
    h, w = input_size(mask.shape[:2])
    grey = Image.fromarray((mask * 255).astype(np.uint8), mode="L")
    padded = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    padded[:h, :w] = np.asarray(grey.resize((w, h), Image.BILINEAR))
    factor = IMAGE_SIZE // LOWRES_SIZE
    rows = padded[0::factor].astype(np.uint16)
    for offset in range(1, factor):
        rows += padded[offset::factor]
    sums = rows[:, 0::factor].copy()
    for offset in range(1, factor):
        sums += rows[:, offset::factor]
    half = factor * factor * 255 // 2
    target = sums > half
    ties = np.nonzero(sums == half)
    if len(ties[0]):
        blocks = padded.reshape(LOWRES_SIZE, factor, LOWRES_SIZE, factor)[ties[0], :, ties[1]]
        # Laid out as the whole frame's blocks are, so that the mean adds up in the same order.
        values = np.ascontiguousarray(blocks.transpose(1, 0, 2))[None] / 255.0
        target[ties] = values.astype(np.float32).mean(axis=(1, 3))[0] >= 0.5
    return target.astype(np.uint8)


def batch_to_tensor(
    sam: Sam, resized: list[np.ndarray], device: torch.device, resize: str = "pil"
) -> torch.Tensor:
    """Resized hxwx3 uint8 views -> Bx3x1024x1024 float32 on `device`, normalised, then padded.

    The uint8 pixels go to the device without making the host wait for the GPU (on CUDA
    straight from the readers' page-locked memory, else packed into pinned memory first:
    `device_resize.staged`); there they are normalised and the padding zeroed, which is
    `Sam.preprocess` element for element. With resize="torch" the views come at their own
    size and are resized on the device (`device_resize.pixels_on_device`).
    """
    if resize == "torch":
        from floodcache.device_resize import pixels_on_device

        return pixels_on_device(sam, resized, device)
    from floodcache.device_resize import staged

    cuda = device.type == "cuda"
    # Not zeroed: whatever the padding holds is overwritten with 0 after normalising, below.
    shape = (len(resized), IMAGE_SIZE, IMAGE_SIZE, 3)
    pixels = torch.empty(shape, dtype=torch.uint8, device=device)
    if cuda:  # each view into its corner of the batch, there
        for i, sent in enumerate(staged(resized, device)):
            pixels[i, : sent.shape[0], : sent.shape[1]] = sent
    else:  # numpy copies on this thread; torch's would wake its thread pool, which spins
        host = pixels.numpy()
        for i, image in enumerate(resized):
            host[i, : image.shape[0], : image.shape[1]] = image
    pixels = pixels.permute(0, 3, 1, 2).float()
    mean = sam.pixel_mean.to(device, non_blocking=cuda)  # no wait for the GPU, even pageable
    batch = (pixels - mean) / sam.pixel_std.to(device, non_blocking=cuda)
    for i, image in enumerate(resized):
        batch[i, :, image.shape[0] :] = 0
        batch[i, :, :, image.shape[1] :] = 0
    return batch


# Each precision's autocast dtype (fp32: no autocast).
DTYPES: dict[str, torch.dtype | None] = dict(
    zip(PRECISIONS, (None, torch.float16, torch.bfloat16), strict=True)
)


def resolve_precision(precision: str, device: torch.device, gpu: str = "fp16") -> str:
    """`precision`, with 'auto' made `gpu` on CUDA and fp32 elsewhere.

    For the encoder `gpu` is fp16: ~3x faster than fp32 at a relative error of ~1e-3, below
    the float16 rounding the cache applies anyway; a CPU has no fast fp16 matrix products.
    """
    if precision == AUTO_PRECISION:
        return gpu if device.type == "cuda" else "fp32"
    if precision == "bf16" and device.type == "cpu" and not cpu_has_fast_bf16():
        _warn_slow_bf16()
    return precision


def cpu_has_fast_bf16() -> bool:
    """Whether oneDNN has bf16 kernels for this CPU (AVX-512 and up). Without them bf16 is
    emulated: 3-16x slower than fp32 on an AVX2-only CPU (eleventh session's bench)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch without oneDNN: nothing to say
        return True


@functools.cache
def _warn_slow_bf16() -> None:  # once a process
    log.warning(
        "bf16 was asked for on a CPU without fast bf16 (no AVX-512): it runs emulated, "
        "several times slower than fp32 here; leave --precision at auto (fp32 on a CPU)"
    )


def relative_error(ours, reference) -> float:
    """||ours - reference|| / ||reference|| over all elements, in float32: how far embeddings
    (tensors or arrays, float16 cached ones too) are from the reference ones."""
    ours, reference = (torch.as_tensor(x).float() for x in (ours, reference))
    return float((ours - reference).norm() / reference.norm())


@contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """Autocast the encoder to `precision` ('fp32' runs without autocast)."""
    if precision not in DTYPES:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(DTYPES)}")
    dtype = DTYPES[precision]
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


@torch.inference_mode()
def encode(
    sam: Sam,
    resized: list[np.ndarray],
    device: torch.device,
    precision: str = "fp32",
    fast: bool = False,
    compile: bool | None = None,
    resize: str = "pil",
) -> torch.Tensor:
    """Image embeddings of resized views: Bx256x64x64 float32 on `device`.

    `fast` runs the same weights and maths through `fast_image_encoder` (fused attention),
    compiled when `compile` (default: `compile_wanted(device)`, so on CUDA); without it,
    segment-anything's own `ImageEncoderViT.forward`. With resize="torch" the views come at
    their own size and are resized on the device (`batch_to_tensor`).
    """
    pixels = batch_to_tensor(sam, resized, device, resize)
    forward = sam.image_encoder
    if fast:
        compile = compile_wanted(device) if compile is None else compile
        forward = fast_image_encoder(sam.image_encoder, compile)
    with autocast(device, precision):
        return forward(pixels).float()


def pick_device(device: str | None) -> torch.device:
    """`device` as given, else CUDA when there is a GPU, else the CPU."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
