"""SAM's image encoder, fast: the same weights and maths, attention through one fused call.

segment-anything's `Attention` materialises the (H*W)^2 attention scores per head, adds the
decomposed relative-position term to them and takes the softmax; for a global-attention block
that is 4096 x 4096 scores per head and view. Here the relative-position term becomes the
additive `attn_mask` of `F.scaled_dot_product_attention`, so fused kernels (CUDA, and the
CPU's flash kernel) compute softmax(q k^T * scale + bias) v without the scores. On CUDA the
whole encoder is also compiled with torch.compile, with a clean fallback where that fails.
On CUDA the term is folded into q and k instead (`folded_qk`): no mask is written at all.
"""

from __future__ import annotations

import logging
from weakref import WeakKeyDictionary

import torch
from torch.nn import functional as F

from floodcache.sam.modeling import (
    Block,
    ImageEncoderViT,
    get_rel_pos,
    window_partition,
    window_unpartition,
)
from floodcache.sam.modeling import EncoderAttention as Attention

log = logging.getLogger(__name__)


def rel_pos_table(size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """size x size x C relative-position embeddings, as segment-anything's `get_rel_pos`.

    For SAM's own sizes (64 global, 14 per window) the table is indexed directly, on the
    embeddings' device (no host-to-device index copy); other sizes go through `get_rel_pos`.
    """
    if rel_pos.shape[0] != 2 * size - 1:
        return get_rel_pos(size, size, rel_pos)
    coords = torch.arange(size, device=rel_pos.device)
    return rel_pos[coords[:, None] - coords[None, :] + (size - 1)]


def rel_pos_terms(
    attn: Attention, q: torch.Tensor, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two halves of SAM's decomposed relative-position term, per query.

    q: B x heads x (H*W) x C, unscaled (as `add_decomposed_rel_pos` uses it). Returns
    rel_h = q.Rh[y, ky], B x heads x H x W x H, and rel_w = q.Rw[x, kx], B x heads x H x W x W,
    in q's dtype.
    """
    h, w = size
    grid = q.unflatten(2, (h, w))
    rel_h = torch.einsum("bnyxc,ykc->bnyxk", grid, rel_pos_table(h, attn.rel_pos_h).to(q.dtype))
    rel_w = torch.einsum("bnyxc,xkc->bnyxk", grid, rel_pos_table(w, attn.rel_pos_w).to(q.dtype))
    return rel_h, rel_w


def rel_pos_bias(attn: Attention, q: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """SAM's decomposed relative-position term as an additive attention mask:
    B x heads x (H*W) x (H*W), bias[(y, x), (ky, kx)] = q.Rh[y, ky] + q.Rw[x, kx]."""
    h, w = size
    rel_h, rel_w = rel_pos_terms(attn, q, size)
    return (rel_h[..., :, None] + rel_w[..., None, :]).reshape(*q.shape[:2], h * w, h * w)


def folded_qk(
    attn: Attention, q: torch.Tensor, k: torch.Tensor, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """q', k' with q' k'^T = q k^T * scale + SAM's relative-position term, and no mask.

    The term is q.Rh[y, ky] + q.Rw[x, kx]: a query's H + W numbers against a key's one-hot
    row and column. Appended to q (scaled) and k, padded to a multiple of 8 for the fused
    kernels, they carry the term through the dot product: B x heads x T x (C + H + W + pad).
    More arithmetic than the mask, far fewer bytes: the default on CUDA (`default_attention`).
    """
    h, w = size
    rel_h, rel_w = rel_pos_terms(attn, q, size)
    tokens = torch.arange(h * w, device=q.device)
    one_hot = torch.cat([F.one_hot(tokens // w, h), F.one_hot(tokens % w, w)], dim=-1)
    pad = -(q.shape[-1] + h + w) % 8
    q = torch.cat([q * attn.scale, rel_h.flatten(2, 3), rel_w.flatten(2, 3)], dim=-1)
    k = torch.cat([k, one_hot.to(k.dtype).expand(*k.shape[:2], -1, -1)], dim=-1)
    return F.pad(q, (0, pad)), F.pad(k, (0, pad))


ATTENTIONS = ("mask", "folded")  # how the relative-position term reaches attention


def sdpa_attention(attn: Attention, x: torch.Tensor, attention: str = "mask") -> torch.Tensor:
    """`Attention.forward` of segment-anything with one fused attention call.

    x: B x H x W x C tokens -> B x H x W x C. softmax(q k^T * scale + rel-pos) v, as SAM's;
    the kernel never holds the (H*W)^2 scores when the device has a fused kernel for it.
    The relative-position term is an additive mask ("mask") or part of q and k ("folded").
    """
    b, h, w, _ = x.shape
    qkv = attn.qkv(x).reshape(b, h * w, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    if not attn.use_rel_pos:
        out = F.scaled_dot_product_attention(q, k, v, scale=attn.scale)
    elif attention == "folded":
        q, k = folded_qk(attn, q, k, (h, w))
        out = F.scaled_dot_product_attention(q, k, v, scale=1.0)
    else:
        bias = rel_pos_bias(attn, q, (h, w))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=attn.scale)
    return attn.proj(out.transpose(1, 2).reshape(b, h, w, -1))


def fast_block(block: Block, x: torch.Tensor, attention: str = "mask") -> torch.Tensor:
    """`Block.forward` of segment-anything with `sdpa_attention`: B x H x W x C -> same."""
    shortcut = x
    x = block.norm1(x)
    if block.window_size > 0:
        h, w = x.shape[1], x.shape[2]
        x, padded = window_partition(x, block.window_size)
    x = sdpa_attention(block.attn, x, attention)
    if block.window_size > 0:
        x = window_unpartition(x, block.window_size, padded, (h, w))
    x = shortcut + x
    return x + block.mlp(block.norm2(x))


class FastImageEncoder(torch.nn.Module):
    """`ImageEncoderViT.forward` with every block's attention fused (`fast_block`).

    Wraps (does not copy) the encoder: same weights, same function, another summation order.
    Bx3x1024x1024 normalised pixels -> Bx256x64x64 embeddings.
    """

    def __init__(self, image_encoder: ImageEncoderViT, attention: str = "mask"):
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"unknown attention {attention!r}; one of {', '.join(ATTENTIONS)}")
        self.image_encoder, self.attention = image_encoder, attention

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        encoder = self.image_encoder
        x = encoder.patch_embed(pixels)
        if encoder.pos_embed is not None:
            x = x + encoder.pos_embed
        for block in encoder.blocks:
            x = fast_block(block, x, self.attention)
        return encoder.neck(x.permute(0, 3, 1, 2))


def is_out_of_memory(err: BaseException | None) -> bool:
    """Whether `err`, or an error it was raised from (torch.compile wraps them), is a CUDA OOM."""
    while err is not None:
        if isinstance(err, torch.cuda.OutOfMemoryError):
            return True
        err = err.__cause__ or err.__context__
    return False


class CompiledForward:
    """A `FastImageEncoder`, compiled when asked; falls back to running it eagerly.

    torch.compile needs Triton and a working compiler; anything failing while compiling (or in
    compiled code, other than running out of memory) is logged once and the next choice takes
    over for good: the compiled mask after the folded attention, then the eager module. Same
    maths all along.
    """

    def __init__(self, image_encoder: ImageEncoderViT, compile: bool, attention: str = "mask"):
        self.eager = FastImageEncoder(image_encoder, attention)
        # Static shapes: BatchEncoder pads a short last batch, so one graph serves a run.
        kinds = []  # what to compile, in order: the attention asked, then the mask
        if compile:
            kinds = [attention] if attention == "mask" else [attention, "mask"]
        self.choices = [
            (kind, torch.compile(FastImageEncoder(image_encoder, kind), dynamic=False))
            for kind in kinds
        ]

    @property
    def compiled(self):
        """The compiled module that runs now; None once running eagerly."""
        return self.choices[0][1] if self.choices else None

    @property
    def attention(self) -> str:
        """The attention of the code that runs now."""
        return self.choices[0][0] if self.choices else self.eager.attention

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        while self.choices:
            try:
                return self.compiled(pixels)
            except Exception as err:
                if is_out_of_memory(err):
                    raise torch.cuda.OutOfMemoryError(str(err)) from err
                failed = self.choices.pop(0)[0]
                log.warning(
                    "torch.compile failed with the %s attention (%s: %s); going on with %s",
                    failed,
                    type(err).__name__,
                    str(err).splitlines()[0] if str(err) else "",
                    f"the compiled {self.attention}" if self.choices else "no compiling",
                )
        return self.eager(pixels)


_FAST: WeakKeyDictionary = WeakKeyDictionary()  # encoder -> {(compile?, attention): forward}


# Compiling takes tens of seconds once and saves a few milliseconds a view: it pays only on
# long runs.
COMPILE_MIN_VIEWS = 10000


def compile_wanted(device: torch.device, views: int | None = None) -> bool:
    """Whether compiling the fast encoder pays: on CUDA only, for runs of COMPILE_MIN_VIEWS
    views or more, or runs that do not say how many."""
    return device.type == "cuda" and (views is None or views >= COMPILE_MIN_VIEWS)


def default_attention(device: torch.device) -> str:
    """How the fast encoder adds the relative-position term on `device` (one of ATTENTIONS):
    folded on CUDA, where it is faster than the mask and needs a fraction of its memory; the
    mask on a CPU, where it is faster."""
    return "folded" if device.type == "cuda" else "mask"


def fast_image_encoder(
    image_encoder: ImageEncoderViT, compile: bool, attention: str | None = None
) -> CompiledForward:
    """The fast forward of `image_encoder`, compiled or not, with `attention` (default: the
    device's, `default_attention`); built once per (compile, attention) and kept while the
    encoder lives."""
    if attention is None:
        attention = default_attention(next(image_encoder.parameters()).device)
    if attention not in ATTENTIONS:
        raise ValueError(f"unknown attention {attention!r}; one of {', '.join(ATTENTIONS)}")
    forwards = _FAST.setdefault(image_encoder, {})
    key = (compile, attention)
    if key not in forwards:
        forwards[key] = CompiledForward(image_encoder, *key)
    return forwards[key]
