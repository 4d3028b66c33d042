"""SAM's prompt side (prompt encoder + mask decoder), batched over many image embeddings.

segment-anything's `MaskDecoder.predict_masks` repeats ONE image embedding for all prompts
(`repeat_interleave`). Training from a cache wants B different embeddings with one prompt
each, so `decode` runs the same modules with the same maths, one image per prompt.
"""

from __future__ import annotations

import numpy as np
import torch
from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer
from torch.nn import functional as F

from floodcache.encoder import IMAGE_SIZE, LOWRES_SIZE
from floodcache.prompts import Prompt, encode_prompts

EMBED_DIM = 256


def build_prompt_encoder() -> PromptEncoder:
    """SAM's prompt encoder (the same for vit_b, vit_l and vit_h), random weights."""
    return PromptEncoder(
        embed_dim=EMBED_DIM,
        image_embedding_size=(64, 64),
        input_image_size=(IMAGE_SIZE, IMAGE_SIZE),
        mask_in_chans=16,
    )


def build_mask_decoder() -> MaskDecoder:
    """SAM's mask decoder (the same for every model type), random weights."""
    return MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=EMBED_DIM, mlp_dim=2048, num_heads=8),
        transformer_dim=EMBED_DIM,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
    )


def load_module(module: torch.nn.Module, state: dict[str, np.ndarray]) -> torch.nn.Module:
    """Load a numpy state dict (as stored in the cache) into `module`, strictly."""
    module.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
    return module


def decode(
    prompt_encoder: PromptEncoder,
    mask_decoder: MaskDecoder,
    embeddings: torch.Tensor,
    prompts: list[Prompt],
    multimask: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Low-res mask logits for B images, one prompt each.

    embeddings: Bx256x64x64 float; prompts: B prompts of one strategy, coordinates already in
    the 1024 input frame (pixel indices); empty prompts decode prompt-free.
    Returns (BxCx256x256 logits over the padded 1024 square, BxC predicted IoU), C = 3 when
    `multimask` (SAM's tokens 1..3), else 1 (token 0), exactly as `MaskDecoder.forward`.
    """
    sparse, dense = encode_prompts(prompt_encoder, prompts, pad_points=True)
    masks, iou = _predict_masks(
        mask_decoder, embeddings, prompt_encoder.get_dense_pe(), sparse, dense
    )
    chosen = slice(1, None) if multimask else slice(0, 1)
    return masks[:, chosen], iou[:, chosen]


def _predict_masks(
    decoder: MaskDecoder,
    embeddings: torch.Tensor,
    image_pe: torch.Tensor,
    sparse: torch.Tensor,
    dense: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MaskDecoder.predict_masks with embeddings[i] paired to prompt i (no repeat_interleave)."""
    batch = embeddings.shape[0]
    output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    tokens = torch.cat((output_tokens.unsqueeze(0).expand(batch, -1, -1), sparse), dim=1)
    src = embeddings + dense
    pos_src = image_pe.expand(batch, -1, -1, -1)
    b, c, h, w = src.shape
    hs, src = decoder.transformer(src, pos_src, tokens)
    iou_token_out = hs[:, 0, :]
    mask_tokens_out = hs[:, 1 : 1 + decoder.num_mask_tokens, :]
    upscaled = decoder.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
    hyper_in = torch.stack(
        [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(decoder.output_hypernetworks_mlps)],
        dim=1,
    )
    b, c, h, w = upscaled.shape
    masks = (hyper_in @ upscaled.reshape(b, c, h * w)).reshape(b, -1, h, w)
    return masks, decoder.iou_prediction_head(iou_token_out)


def pick_by_iou(masks: torch.Tensor, iou: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """BxCxHxW logits, BxC predicted IoU -> the mask SAM rates best: Bx1xHxW and Bx1."""
    best = iou.argmax(dim=1)
    rows = torch.arange(masks.shape[0], device=masks.device)
    return masks[rows, best][:, None], iou[rows, best][:, None]


def postprocess(
    lowres: torch.Tensor, input_size: tuple[int, int], original_size: tuple[int, int]
) -> torch.Tensor:
    """Bx1x256x256 logits -> Bx1xHxW logits at the original size, as Sam.postprocess_masks.

    Upsample to the padded 1024 square, crop the padding away, resize to (H, W).
    """
    masks = F.interpolate(lowres, (IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    masks = masks[..., : input_size[0], : input_size[1]]
    return F.interpolate(masks, tuple(original_size), mode="bilinear", align_corners=False)


def valid_lowres(input_size: tuple[int, int]) -> tuple[int, int]:
    """(rows, cols) of the 256x256 low-res frame that cover the image, not the padding."""
    scale = IMAGE_SIZE // LOWRES_SIZE
    return -(-int(input_size[0]) // scale), -(-int(input_size[1]) // scale)
