"""SAM's prompt side (prompt encoder + mask decoder), batched over many image embeddings.

segment-anything's `MaskDecoder.predict_masks` repeats ONE image embedding for all prompts
(`repeat_interleave`). Training from a cache wants B different embeddings with one prompt
each, so `decode` runs the same modules with the same maths, one image per prompt, in an
order that trains fast: only the returned masks are made, the transposed convolutions are
matmuls over channels-last pixels, and attention is one fused call.
"""

from __future__ import annotations

import numpy as np
import torch
from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer
from segment_anything.modeling.transformer import Attention, TwoWayAttentionBlock
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
    tokens = range(1, mask_decoder.num_mask_tokens) if multimask else range(0, 1)
    return _predict_masks(
        mask_decoder, embeddings, prompt_encoder.get_dense_pe(), sparse, dense, tokens
    )


def _predict_masks(
    decoder: MaskDecoder,
    embeddings: torch.Tensor,
    image_pe: torch.Tensor,
    sparse: torch.Tensor,
    dense: torch.Tensor,
    mask_tokens: range,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MaskDecoder.predict_masks with embeddings[i] paired to prompt i (no repeat_interleave).

    Only the masks of `mask_tokens` are made: the others' hypernetworks would feed nothing
    that is returned, so no output changes, and their weights get no gradient (None) where
    SAM's forward gives them zeros.
    Returns (B x len(mask_tokens) x 256 x 256 logits, B x len(mask_tokens) predicted IoU).
    """
    batch = embeddings.shape[0]
    output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    tokens = torch.cat((output_tokens.unsqueeze(0).expand(batch, -1, -1), sparse), dim=1)
    image = (embeddings + dense).flatten(2).transpose(1, 2).contiguous()
    hs, src = two_way_transformer(decoder.transformer, image, image_pe.flatten(2).mT, tokens)
    hyper_in = torch.stack(
        [decoder.output_hypernetworks_mlps[i](hs[:, 1 + i, :]) for i in mask_tokens], dim=1
    )
    masks = upscaled_masks(decoder.output_upscaling, src, embeddings.shape[2:], hyper_in)
    iou = decoder.iou_prediction_head(hs[:, 0, :])
    return masks, iou[:, mask_tokens.start : mask_tokens.stop]


def two_way_transformer(
    transformer: TwoWayTransformer,
    image: torch.Tensor,
    image_pe: torch.Tensor,
    tokens: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`TwoWayTransformer.forward` with the same maths and less memory traffic.

    image: B x N x 256 image tokens (row-major), image_pe: 1 x N x 256 (one for the batch),
    tokens: B x T x 256 -> (B x T x 256 tokens, B x N x 256 image tokens). The image tokens
    plus PE are formed once per block and feed both cross attentions through one matmul, and
    attention runs through F.scaled_dot_product_attention.
    """
    queries, keys = tokens, image
    for layer in transformer.layers:
        queries, keys = _two_way_block(layer, queries, keys, tokens, image_pe)
    final = transformer.final_attn_token_to_image
    attn_out = _attend(
        final,
        final.q_proj(queries + tokens),
        final.k_proj(keys + image_pe),
        final.v_proj(keys),
    )
    return transformer.norm_final_attn(queries + attn_out), keys


def _two_way_block(
    layer: TwoWayAttentionBlock,
    queries: torch.Tensor,
    keys: torch.Tensor,
    query_pe: torch.Tensor,
    key_pe: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`TwoWayAttentionBlock.forward`, same maths (shapes as `two_way_transformer`)."""
    if layer.skip_first_layer_pe:
        queries = layer.self_attn(q=queries, k=queries, v=queries)
    else:
        q = queries + query_pe
        queries = queries + layer.self_attn(q=q, k=q, v=queries)
    queries = layer.norm1(queries)
    to_image, to_token = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
    # keys + PE enter the token->image keys and the image->token queries: one matmul for both
    both = F.linear(
        keys + key_pe,
        torch.cat([to_image.k_proj.weight, to_token.q_proj.weight]),
        torch.cat([to_image.k_proj.bias, to_token.q_proj.bias]),
    )
    image_keys, image_queries = both.split(to_image.internal_dim, dim=-1)
    attn_out = _attend(
        to_image, to_image.q_proj(queries + query_pe), image_keys, to_image.v_proj(keys)
    )
    queries = layer.norm2(queries + attn_out)
    queries = layer.norm3(queries + layer.mlp(queries))
    q = queries + query_pe
    attn_out = _attend(to_token, image_queries, to_token.k_proj(q), to_token.v_proj(queries))
    return queries, layer.norm4(keys + attn_out)


def _attend(
    attention: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
) -> torch.Tensor:
    """segment-anything's decoder `Attention.forward` after the q/k/v projections.

    q: B x Nq x D, k and v: B x Nk x D (D = the internal width) -> B x Nq x 256.
    softmax(q k^T / sqrt(D / heads)) v per head, as SAM's, in one fused call.
    """
    heads = attention.num_heads
    q, k, v = (x.unflatten(-1, (heads, -1)).transpose(1, 2) for x in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v)
    return attention.out_proj(out.transpose(1, 2).flatten(2))


def upscaled_masks(
    upscaling: torch.nn.Sequential,
    src: torch.Tensor,
    size: tuple[int, int],
    hyper_in: torch.Tensor,
) -> torch.Tensor:
    """`hyper_in @ output_upscaling(src)`, as SAM's decoder, with no pixel shuffled on the way.

    src: B x (h*w) x 256 image tokens (row-major), hyper_in: B x M x 32 -> B x M x 4h x 4w.
    Both transposed convolutions have kernel 2 and stride 2, so each input pixel owns its 2x2
    output block: each is one matmul over channels-last pixels, LayerNorm2d is a layer norm
    over the last dim, and GELU is elementwise. The blocks are put in place once, at the end,
    on the M mask channels instead of 32 feature channels.
    """
    conv1, norm, act1, conv2, act2 = upscaling
    h, w = size
    x = act1(
        F.layer_norm(_deconv_2x2(src, conv1), norm.weight.shape, norm.weight, norm.bias, norm.eps)
    )
    x = act2(_deconv_2x2(x, conv2))  # B x (h*w*16) x 32, pixel order (y, x, i1, j1, i2, j2)
    masks = x @ hyper_in.transpose(1, 2)
    b, m = hyper_in.shape[:2]
    # output row 4y + 2 i1 + i2, column 4x + 2 j1 + j2
    masks = masks.view(b, h, w, 2, 2, 2, 2, m).permute(0, 7, 1, 3, 5, 2, 4, 6)
    return masks.reshape(b, m, 4 * h, 4 * w)


def _deconv_2x2(x: torch.Tensor, conv: torch.nn.ConvTranspose2d) -> torch.Tensor:
    """ConvTranspose2d(kernel 2, stride 2) on channels-last pixels: B x P x Cin -> B x 4P x Cout.

    Output pixel (p, i, j), row i and column j of pixel p's 2x2 block, is
    x[p] @ weight[:, :, i, j] + bias.
    """
    cin, cout = conv.weight.shape[:2]
    weight = conv.weight.permute(2, 3, 1, 0).reshape(4 * cout, cin)  # rows (i, j, cout)
    out = F.linear(x, weight, conv.bias.repeat(4))
    return out.unflatten(-1, (4, cout)).flatten(-3, -2)


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
