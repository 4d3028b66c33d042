"""SAM's prompt side (prompt encoder + mask decoder), batched over many image embeddings.

segment-anything's `MaskDecoder.predict_masks` repeats ONE image embedding for all prompts
(`repeat_interleave`). Training from a cache wants B different embeddings with one prompt
each, so `decode` runs the same modules with the same maths, one image per prompt, in an
order that trains fast: only the returned masks are made, the transposed convolutions are
matmuls over channels-last pixels, and the cross attentions never project the 4096 image
tokens (the few tokens' side of each product is projected instead).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
from torch.nn import functional as F

from floodcache.prompts import Prompt
from floodcache.sam.modeling import (
    Attention,
    MaskDecoder,
    PromptEncoder,
    TwoWayAttentionBlock,
    TwoWayTransformer,
)
from floodcache.sam.preprocess import IMAGE_SIZE

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


def to_sam_inputs(
    prompts: list[Prompt], device: torch.device | None = None, pad_points: bool = False
) -> tuple[tuple[torch.Tensor, torch.Tensor] | None, torch.Tensor | None]:
    """Batch prompts of one strategy for `PromptEncoder.forward(points=, boxes=, masks=None)`.

    Returns (coords BxKx2 float32, labels BxK int32) or None, and boxes Bx4 float32 or None.
    Coordinates pass through unchanged: scale them to SAM's 1024 input frame first
    (`Prompt.scaled`). Prompts with different point counts raise ValueError, unless pad_points
    is True: then shorter prompts are padded to the longest with SAM's "not a point" (label -1 at
    0, 0), which the encoder embeds as no point (e.g. `points` on an all-water view).

    All-empty prompts (`none`) give (None, None). PromptEncoder then returns a batch of 1
    (sparse 1x0x256, dense 1x256x64x64), to be expanded to B; `encode_prompts` does that.
    """
    if not prompts:
        raise ValueError("to_sam_inputs needs at least one prompt")
    counts = {prompt.num_points for prompt in prompts}
    if len(counts) > 1 and not pad_points:
        raise ValueError(
            f"prompts in one batch must have the same number of points, got {sorted(counts)}; "
            "batch one strategy at a time, or pass pad_points=True"
        )
    if len({prompt.box is None for prompt in prompts}) > 1:
        raise ValueError("prompts in one batch must all have a box or all have none")
    points = None
    if max(counts) > 0:
        padded = [_padded_points(prompt, max(counts)) for prompt in prompts]
        coords = torch.as_tensor(np.stack([coords for coords, _ in padded]), device=device)
        labels = torch.as_tensor(np.stack([labels for _, labels in padded]), device=device)
        points = (coords, labels)
    boxes = None
    if prompts[0].box is not None:
        boxes_xyxy = [prompt.box for prompt in prompts if prompt.box is not None]
        if len(boxes_xyxy) != len(prompts):
            raise ValueError("one batch of prompts mixes prompts with and without a box")
        boxes = torch.as_tensor(np.stack(boxes_xyxy), device=device)
    return points, boxes


def _padded_points(prompt: Prompt, count: int) -> tuple[np.ndarray, np.ndarray]:
    coords = np.zeros((count, 2), dtype=np.float32)
    labels = np.full(count, -1, dtype=np.int32)
    if prompt.points is not None and prompt.labels is not None:
        coords[: prompt.num_points] = prompt.points
        labels[: prompt.num_points] = prompt.labels
    return coords, labels


def encode_prompts(
    prompt_encoder: torch.nn.Module, prompts: list[Prompt], pad_points: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run SAM's PromptEncoder on a batch of B prompts (already in the 1024 frame).

    Returns sparse BxNx256 and dense Bx256x64x64 embeddings (N: points, plus one padding point
    when there is no box, plus 2 for a box; 0 for `none`), on the encoder's device.
    """
    device = next(prompt_encoder.parameters()).device
    points, boxes = to_sam_inputs(prompts, device=device, pad_points=pad_points)
    sparse, dense = prompt_encoder(points=points, boxes=boxes, masks=None)
    if points is None and boxes is None:
        sparse = sparse.expand(len(prompts), -1, -1)
        dense = dense.expand(len(prompts), -1, -1, -1)
    return sparse, dense


class EncodedPrompts(NamedTuple):
    """What SAM's mask decoder reads of B prompts, from the (frozen) prompt encoder."""

    sparse: torch.Tensor  # B x T x 256 point and box embeddings
    dense: torch.Tensor  # B x 256 x 64 x 64 (no mask prompt: one vector, expanded)
    image_pe: torch.Tensor  # 1 x 256 x 64 x 64 positional encoding, the same for every image

    def select(self, part: slice) -> EncodedPrompts:
        """The prompts `part` of the batch."""
        return EncodedPrompts(self.sparse[part], self.dense[part], self.image_pe)


def encode(prompt_encoder: PromptEncoder, prompts: list[Prompt]) -> EncodedPrompts:
    """B prompts of one strategy (coordinates in the 1024 input frame) -> `EncodedPrompts`."""
    sparse, dense = encode_prompts(prompt_encoder, prompts, pad_points=True)
    return EncodedPrompts(sparse, dense, prompt_encoder.get_dense_pe())


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
    return decode_encoded(mask_decoder, embeddings, encode(prompt_encoder, prompts), multimask)


def decode_encoded(
    mask_decoder: MaskDecoder, embeddings: torch.Tensor, prompts: EncodedPrompts, multimask: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """`decode` with the prompts already encoded (once for a batch decoded in parts)."""
    tokens = range(1, mask_decoder.num_mask_tokens) if multimask else range(0, 1)
    return _predict_masks(mask_decoder, embeddings, prompts, tokens)


def _predict_masks(
    decoder: MaskDecoder, embeddings: torch.Tensor, prompts: EncodedPrompts, mask_tokens: range
) -> tuple[torch.Tensor, torch.Tensor]:
    """MaskDecoder.predict_masks with embeddings[i] paired to prompt i (no repeat_interleave).

    Only the masks of `mask_tokens` are made: the others' hypernetworks would feed nothing
    that is returned, so no output changes, and their weights get no gradient (None) where
    SAM's forward gives them zeros.
    Returns (B x len(mask_tokens) x 256 x 256 logits, B x len(mask_tokens) predicted IoU).
    """
    batch = embeddings.shape[0]
    output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    tokens = torch.cat((output_tokens.unsqueeze(0).expand(batch, -1, -1), prompts.sparse), dim=1)
    image = (embeddings + prompts.dense).flatten(2).transpose(1, 2).contiguous()
    image_pe = prompts.image_pe.flatten(2).mT
    hs, src = two_way_transformer(decoder.transformer, image, image_pe, tokens)
    hyper_in = torch.stack(
        [decoder.output_hypernetworks_mlps[i](hs[:, 1 + i, :]) for i in mask_tokens], dim=1
    )
    size = (embeddings.shape[2], embeddings.shape[3])
    masks = upscaled_masks(decoder.output_upscaling, src, size, hyper_in)
    iou = decoder.iou_prediction_head(hs[:, 0, :])
    return masks, iou[:, mask_tokens.start : mask_tokens.stop]


def two_way_transformer(
    transformer: TwoWayTransformer,
    image: torch.Tensor,
    image_pe: torch.Tensor,
    tokens: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`TwoWayTransformer.forward` with the same maths and fewer multiplications.

    image: B x N x 256 image tokens (row-major), image_pe: 1 x N x 256 (one for the batch),
    tokens: B x T x 256 -> (B x T x 256 tokens, B x N x 256 image tokens). The image tokens
    plus PE are formed once per block and feed both cross attentions, which never project
    the image tokens themselves (`_token_to_image`, `_image_to_token`).
    """
    queries, keys = tokens, image
    for layer in transformer.layers:
        queries, keys = _two_way_block(layer, queries, keys, tokens, image_pe)
    attn_out = _token_to_image(
        transformer.final_attn_token_to_image, queries + tokens, keys + image_pe, keys
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
    keys_pe = keys + key_pe
    attn_out = _token_to_image(layer.cross_attn_token_to_image, queries + query_pe, keys_pe, keys)
    queries = layer.norm2(queries + attn_out)
    queries = layer.norm3(queries + layer.mlp(queries))
    keys = _image_to_token(
        layer.cross_attn_image_to_token, keys_pe, queries + query_pe, queries, residual=keys
    )
    return queries, layer.norm4(keys)


def _token_to_image(
    attention: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
) -> torch.Tensor:
    """segment-anything's `Attention.forward` for a few token queries over many image keys.

    q: B x T x 256 tokens, k and v: B x N x 256 image tokens -> B x T x 256.
    SAM projects all N keys and values to D = the internal width. With T*heads << D rows
    of queries, the same sums are cheaper the other way round: a head's score
    q_h . (Wk_h k + bk_h) is k . (Wk_h^T q_h) + q_h . bk_h, and as a head's weights sum to 1,
    its output sum_n p_n (Wv_h v_n + bv_h) is Wv_h (sum_n p_n v_n) + bv_h.
    """
    heads, count = attention.num_heads, q.shape[1]
    q_heads = _heads(attention.q_proj(q), heads) * _scale(attention)  # B x H x T x d
    k_weight, k_bias = _head_weights(attention.k_proj, heads)
    bias = (q_heads @ k_bias).flatten(1).unsqueeze(1)  # B x 1 x HT
    scores = torch.baddbmm(bias, k, (q_heads @ k_weight).flatten(1, 2).mT)  # B x N x HT
    # the softmax in the layout its gradient comes back in (B x HT x N): no copy backward
    pooled = torch.softmax(scores.mT, dim=-1) @ v  # B x HT x 256
    v_weight, v_bias = _head_weights(attention.v_proj, heads)
    out = pooled.unflatten(1, (heads, count)) @ v_weight.mT + v_bias.mT  # B x H x T x d
    return attention.out_proj(out.transpose(1, 2).flatten(2))


def _image_to_token(
    attention: Attention,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    residual: torch.Tensor,
) -> torch.Tensor:
    """`residual` + segment-anything's `Attention.forward` for many image queries over a few
    token keys.

    q and residual: B x N x 256 image tokens, k and v: B x T x 256 tokens -> B x N x 256.
    As in `_token_to_image`, the N image tokens are never projected to the internal width:
    a head's score (Wq_h q + bq_h) . k_h is q . (Wq_h^T k_h) + bq_h . k_h, and its output
    Wo_h (sum_t p_t v_t) is sum_t p_t (Wo_h v_t), one matmul over T*heads columns that
    also adds the residual; the output bias rides along as bo / heads on every head's
    values, since each head's weights sum to 1.
    """
    heads, count = attention.num_heads, k.shape[1]
    k_heads = _heads(attention.k_proj(k), heads) * _scale(attention)  # B x H x T x d
    q_weight, q_bias = _head_weights(attention.q_proj, heads)
    bias = (k_heads @ q_bias).flatten(1).unsqueeze(1)  # B x 1 x HT
    scores = torch.baddbmm(bias, q, (k_heads @ q_weight).flatten(1, 2).mT)  # B x N x HT
    # softmax over each head's T tokens, with N as the fast axis (a last axis of T is slow)
    probs = torch.softmax(scores.mT.unflatten(1, (heads, count)), dim=2)  # B x H x T x N
    out_weight = attention.out_proj.weight.unflatten(1, (heads, -1)).transpose(0, 1)
    values = _heads(attention.v_proj(v), heads) @ out_weight.mT  # B x H x T x 256
    values = values + attention.out_proj.bias / heads
    return torch.baddbmm(residual, probs.flatten(1, 2).mT, values.flatten(1, 2))


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """B x T x D -> B x heads x T x D/heads, as SAM's `Attention._separate_heads`."""
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)


def _head_weights(linear: torch.nn.Linear, heads: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A projection's weight and bias by head: heads x d x 256 and heads x d x 1."""
    return linear.weight.unflatten(0, (heads, -1)), linear.bias.view(heads, -1, 1)


def _scale(attention: Attention) -> float:
    """SAM divides the scores by sqrt(d), d = per-head width."""
    return (attention.internal_dim // attention.num_heads) ** -0.5


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
    # segment-anything's modules, typed as Any: torch's Module types say too little here
    modules: list[Any] = list(upscaling)
    conv1, norm, act1, conv2, act2 = modules
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
    bias = conv.bias.repeat(4) if conv.bias is not None else None
    out = F.linear(x, weight, bias)
    return out.unflatten(-1, (4, cout)).flatten(-3, -2)


def pick_by_iou(masks: torch.Tensor, iou: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """BxCxHxW logits, BxC predicted IoU -> the mask SAM rates best: Bx1xHxW and Bx1."""
    best = iou.argmax(dim=1)
    rows = torch.arange(masks.shape[0], device=masks.device)
    return masks[rows, best][:, None], iou[rows, best][:, None]
