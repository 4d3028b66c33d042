"""A batch of views on the device as the encoder's input (`batch_to_tensor`), resized on the host
beforehand or, with `--resize torch`, on the device as `ResizeLongestSide.apply_image_torch`.

`embed --resize torch`: readers send each view at its own size and the GPU resizes it (bilinear
with antialias, no rounding to uint8, as `SamPredictor.set_torch_image` is fed), normalises and
pads it, and makes the low-res training target from the mask the same way. That saves the
readers SAM's PIL resize of each image (view 0: augmented views are made at SAM's input size
already, `views.view_base`) and its mask's, for a GPU machine whose readers cannot keep up
with its encoder. The pixels differ slightly from
`apply_image`'s PIL resize (segment-anything: "may not exactly match"), so the cache records
which resize made it. `apply_image_torch` itself is not called: segment-anything 1.0 reads
its size from the batch and channel axes (every image becomes 341x1024); the size here comes
from the image's height and width.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch.nn import functional as F

from floodcache.sam.modeling import Sam
from floodcache.sam.preprocess import IMAGE_SIZE, LOWRES_SIZE, input_size


def staged(arrays: list[np.ndarray], device: torch.device) -> list[torch.Tensor]:
    """uint8 arrays -> the same arrays on `device`, without making the host wait for the GPU.

    On CUDA an array in page-locked memory (the readers' slots) is copied from where it is;
    the others are packed into one pinned buffer first and sent in one copy.
    """
    cuda = device.type == "cuda"
    with warnings.catch_warnings():  # read-only arrays (unpickled ones): only read here
        warnings.simplefilter("ignore", UserWarning)
        hosts = [torch.from_numpy(array) for array in arrays]
    offsets, start = {}, 0  # index of each array to pack -> where it starts in the buffer
    for index, host in enumerate(hosts):
        if not (cuda and host.is_pinned()):
            offsets[index], start = start, start + host.numel()
    flat = torch.empty(start, dtype=torch.uint8, pin_memory=cuda)
    packed = flat.numpy()  # numpy copies from read-only arrays (readers' views) too
    for index, offset in offsets.items():
        packed[offset : offset + arrays[index].size] = arrays[index].reshape(-1)
    sent = flat.to(device, non_blocking=cuda)
    return [
        sent[offsets[i] : offsets[i] + array.size].view(array.shape)
        if i in offsets
        else hosts[i].to(device, non_blocking=True)
        for i, array in enumerate(arrays)
    ]


def resize_like_sam(pixels: torch.Tensor) -> torch.Tensor:
    """CxHxW (or BxCxHxW, B images of one size) -> Cxhxw (BxCxhxw) float32, longest side
    1024: `ResizeLongestSide.apply_image_torch`'s interpolation, at the size
    `preprocess.input_size` (`get_preprocess_shape`) gives for H, W."""
    size = input_size((pixels.shape[-2], pixels.shape[-1]))
    if size == tuple(pixels.shape[-2:]):  # augmented views (`views.view_base`): no resize
        return pixels.float()
    images = pixels.float() if pixels.dim() == 4 else pixels[None].float()
    resized = F.interpolate(images, size, mode="bilinear", align_corners=False, antialias=True)
    return resized if pixels.dim() == 4 else resized[0]


def same_size(arrays: list[torch.Tensor]) -> list[tuple[list[int], torch.Tensor]]:
    """`arrays` grouped by shape, in order of first appearance: (their indices, the arrays
    stacked). An image's augmented views share a size, so the device works a group in one
    call instead of one view at a time (each call is the host's time)."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, array in enumerate(arrays):
        groups.setdefault(tuple(array.shape), []).append(index)
    return [
        (
            rows,
            torch.stack([arrays[row] for row in rows]) if len(rows) > 1 else arrays[rows[0]][None],
        )
        for rows in groups.values()
    ]


def pixels_on_device(sam: Sam, images: list[np.ndarray], device: torch.device) -> torch.Tensor:
    """HxWx3 uint8 views of any size -> Bx3x1024x1024 float32 on `device`: resized there
    (`resize_like_sam`), normalised and zero-padded bottom and right, as `Sam.preprocess`."""
    # Laid out as `batch_to_tensor` lays out the readers' resized views (channels
    # last), so that the compiled encoder takes both without compiling again (~27 s).
    shape = (len(images), IMAGE_SIZE, IMAGE_SIZE, 3)
    batch = torch.zeros(shape, device=device).permute(0, 3, 1, 2)
    mean, std = sam.pixel_mean.to(device), sam.pixel_std.to(device)
    for rows, pixels in same_size(staged(images, device)):
        resized = resize_like_sam(pixels.permute(0, 3, 1, 2))
        h, w = resized.shape[-2:]
        batch[rows, :, :h, :w] = (resized - mean) / std
    return batch


def lowres_targets(masks: list[np.ndarray], device: torch.device) -> torch.Tensor:
    """HxW {0,1} masks -> Bx256x256 uint8 {0,1} targets on `device`, built like the images:
    resized as `resize_like_sam`, padded bottom/right to 1024, 4x4 area-averaged down to 256
    and thresholded at one half."""
    padded = torch.zeros(len(masks), 1, IMAGE_SIZE, IMAGE_SIZE, device=device)
    for rows, grouped in same_size(staged(masks, device)):
        resized = resize_like_sam(grouped[:, None])
        padded[rows, :, : resized.shape[2], : resized.shape[3]] = resized
    area = F.avg_pool2d(padded, IMAGE_SIZE // LOWRES_SIZE)[:, 0]
    return (area >= 0.5).to(torch.uint8)


def batch_to_tensor(
    sam: Sam, resized: list[np.ndarray], device: torch.device, resize: str = "pil"
) -> torch.Tensor:
    """Resized hxwx3 uint8 views -> Bx3x1024x1024 float32 on `device`, normalised, then padded.

    The uint8 pixels go to the device without making the host wait for the GPU (on CUDA
    straight from the readers' page-locked memory, else packed into pinned memory first:
    `staged`); there they are normalised and the padding zeroed, which is
    `Sam.preprocess` element for element. With resize="torch" the views come at their own
    size and are resized on the device (`pixels_on_device`).
    """
    if resize == "torch":
        return pixels_on_device(sam, resized, device)
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
