"""The batched decoder gives what segment-anything's own decoder gives, image by image, and
batches of prompts reach SAM's prompt encoder as it expects them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything.modeling.transformer import Attention

from floodcache.prompts import PROMPTS, Prompt, PromptOptions, make_prompt
from floodcache.sam import decoder
from tests.helpers import blobs
from tests.helpers import prompt as blob_prompt


@pytest.fixture(scope="module")
def prompt_side():
    torch.manual_seed(0)
    return decoder.build_prompt_encoder().eval(), decoder.build_mask_decoder().eval()


def masks_1024(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    masks = []
    for _ in range(count):
        mask = np.zeros((1024, 1024), np.uint8)
        top, left = rng.integers(100, 600, 2)
        mask[top : top + rng.integers(50, 400), left : left + rng.integers(50, 400)] = 1
        masks.append(mask)
    return masks


def sam_decode(prompt_encoder, mask_decoder, embedding, prompt, multimask: bool):
    """segment-anything's own decoder on one 1x256x64x64 embedding and one prompt.

    The prompt embeddings are detached: the prompt encoder is frozen, as in training.
    """
    points, boxes = decoder.to_sam_inputs([prompt])
    sparse, dense = prompt_encoder(points=points, boxes=boxes, masks=None)
    return mask_decoder(
        image_embeddings=embedding,
        image_pe=prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse.detach(),
        dense_prompt_embeddings=dense.detach(),
        multimask_output=multimask,
    )


@pytest.mark.parametrize("name", sorted(PROMPTS))
def test_batched_decode_equals_sam_decoder(prompt_side, name):
    prompt_encoder, mask_decoder = prompt_side
    strategy = PROMPTS[name]
    embeddings = torch.randn(4, 256, 64, 64)
    prompts = [
        make_prompt(strategy, mask, 0, str(i), 0, 0, PromptOptions())
        for i, mask in enumerate(masks_1024(4))
    ]
    with torch.no_grad():
        ours, ours_iou = decoder.decode(
            prompt_encoder, mask_decoder, embeddings, prompts, strategy.multimask
        )
        for i, prompt in enumerate(prompts):
            theirs, theirs_iou = sam_decode(
                prompt_encoder, mask_decoder, embeddings[i : i + 1], prompt, strategy.multimask
            )
            assert ours[i].shape == theirs[0].shape
            torch.testing.assert_close(ours[i], theirs[0], rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(ours_iou[i], theirs_iou[0], rtol=1e-4, atol=1e-4)
    assert ours.shape == (4, 3 if strategy.multimask else 1, 256, 256)


def test_pick_by_iou_takes_the_highest_score():
    masks = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 2, 2)
    iou = torch.tensor([[0.1, 0.9, 0.2], [0.7, 0.1, 0.3]])
    best, score = decoder.pick_by_iou(masks, iou)
    assert torch.equal(best[0, 0], masks[0, 1]) and torch.equal(best[1, 0], masks[1, 0])
    assert score.flatten().tolist() == pytest.approx([0.9, 0.7])


@pytest.mark.parametrize("name", ["box", "point"])
def test_batched_decode_trains_like_sam_decoder(name):
    """The same loss gives the same gradient for every decoder weight as SAM's own forward."""
    torch.manual_seed(1)
    prompt_encoder, mask_decoder = decoder.build_prompt_encoder(), decoder.build_mask_decoder()
    with torch.no_grad():  # trained-like weights: nothing zero, so every path carries gradient
        for parameter in mask_decoder.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.02)
    strategy = PROMPTS[name]
    embeddings = torch.randn(2, 256, 64, 64)
    prompts = [
        make_prompt(strategy, mask, 0, str(i), 0, 0, PromptOptions())
        for i, mask in enumerate(masks_1024(2))
    ]
    ours = decoder.decode(prompt_encoder, mask_decoder, embeddings, prompts, strategy.multimask)
    (ours[0].square().mean() + ours[1].sum()).backward()
    # masks that are not returned are not made: their hypernetworks get no gradient, SAM's zeros
    our_grads = {
        k: torch.zeros_like(p) if p.grad is None else p.grad.clone()
        for k, p in mask_decoder.named_parameters()
    }
    mask_decoder.zero_grad()
    total = 0
    for i, prompt in enumerate(prompts):
        masks, iou = sam_decode(
            prompt_encoder, mask_decoder, embeddings[i : i + 1], prompt, strategy.multimask
        )
        total = total + masks.square().mean() / 2 + iou.sum()
    total.backward()
    for key, parameter in mask_decoder.named_parameters():
        theirs = parameter.grad if parameter.grad is not None else torch.zeros_like(parameter)
        torch.testing.assert_close(our_grads[key], theirs, rtol=1e-3, atol=1e-6, msg=key)


def trained_like_attention(seed: int) -> Attention:
    """SAM's cross-attention module (internal width 128, 8 heads) with no zero weight."""
    torch.manual_seed(seed)
    attention = Attention(decoder.EMBED_DIM, num_heads=8, downsample_rate=2)
    with torch.no_grad():
        for parameter in attention.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    return attention


def values_and_grads(attention, function, *inputs):
    """function(*inputs) and the gradients of a fixed loss for every input and weight."""
    inputs = [x.clone().requires_grad_(True) for x in inputs]
    attention.zero_grad()
    out = function(*inputs)
    (out * torch.linspace(-1, 1, out.shape[-1])).square().sum().backward()
    grads = [x.grad for x in inputs] + [p.grad.clone() for p in attention.parameters()]
    return out.detach(), grads


def assert_same_values_and_grads(ours, theirs):
    """Equal outputs, and gradients equal up to float32 rounding of the largest gradient
    (the key bias's gradient is zero in exact arithmetic: both sides hold rounding noise)."""
    torch.testing.assert_close(ours[0], theirs[0], rtol=1e-4, atol=1e-5)
    scale = max(grad.abs().max() for grad in theirs[1])
    for our_grad, their_grad in zip(ours[1], theirs[1], strict=True):
        torch.testing.assert_close(our_grad, their_grad, rtol=1e-4, atol=1e-5 * scale)


def test_token_to_image_attention_equals_sam_attention():
    """A few token queries over many image tokens, computed without projecting the image."""
    attention = trained_like_attention(2)
    q, k, v = torch.randn(2, 7, 256), torch.randn(2, 300, 256), torch.randn(2, 300, 256)
    ours = values_and_grads(attention, lambda *x: decoder._token_to_image(attention, *x), q, k, v)
    theirs = values_and_grads(attention, lambda q, k, v: attention(q=q, k=k, v=v), q, k, v)
    assert_same_values_and_grads(ours, theirs)


def test_image_to_token_attention_equals_sam_attention_plus_residual():
    """Many image queries over a few tokens, the residual added in the same product."""
    attention = trained_like_attention(3)
    q, k, v = torch.randn(2, 300, 256), torch.randn(2, 5, 256), torch.randn(2, 5, 256)
    residual = torch.randn(2, 300, 256)
    ours = values_and_grads(
        attention,
        lambda q, k, v, r: decoder._image_to_token(attention, q, k, v, residual=r),
        q,
        k,
        v,
        residual,
    )
    theirs = values_and_grads(
        attention, lambda q, k, v, r: r + attention(q=q, k=k, v=v), q, k, v, residual
    )
    assert_same_values_and_grads(ours, theirs)


def test_a_batch_decoded_in_parts_equals_the_whole_batch(prompt_side):
    """Training decodes a batch in parts of prompts encoded once for the batch."""
    prompt_encoder, mask_decoder = prompt_side
    strategy = PROMPTS["point"]
    embeddings = torch.randn(3, 256, 64, 64)
    prompts = [
        make_prompt(strategy, mask, 0, str(i), 0, 0, PromptOptions())
        for i, mask in enumerate(masks_1024(3))
    ]
    with torch.no_grad():
        whole = decoder.decode(prompt_encoder, mask_decoder, embeddings, prompts, True)
        encoded = decoder.encode(prompt_encoder, prompts)
        parts = [
            decoder.decode_encoded(mask_decoder, embeddings[part], encoded.select(part), True)
            for part in (slice(0, 1), slice(1, 3))
        ]
    joined = [torch.cat([part[i] for part in parts]) for i in range(2)]  # logits, IoU
    for ours, theirs in zip(whole, joined, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def prompt_encoder(prompt_side):
    return prompt_side[0]


# Sparse tokens per prompt: points (+1 padding point when there is no box) + 2 box corners.
SPARSE_TOKENS = {"point": 2, "center": 2, "points": 7, "box": 2, "box+point": 3, "none": 0}


@pytest.mark.parametrize("name", list(PROMPTS))
def test_to_sam_inputs_feeds_the_prompt_encoder(name, prompt_encoder):
    mask = blobs()  # 64x80: to the 1024 frame by 1024 / 80
    prompts = [blob_prompt(name, mask, view=v).scaled(12.8, 12.8) for v in range(3)]
    points, boxes = decoder.to_sam_inputs(prompts)
    if points is not None:
        coords, labels = points
        assert coords.dtype == torch.float32 and coords.shape == (3, prompts[0].num_points, 2)
        assert labels.shape == (3, prompts[0].num_points)
        assert torch.equal(coords[1], torch.tensor(prompts[1].points.tolist()))
    if boxes is not None:
        assert boxes.dtype == torch.float32 and boxes.shape == (3, 4)
    with torch.no_grad():
        sparse, dense = prompt_encoder(points=points, boxes=boxes, masks=None)
        encoded = decoder.encode_prompts(prompt_encoder, prompts)
    expected_batch = 1 if name == "none" else 3  # no prompt at all: the encoder sees batch 1
    assert sparse.shape == (expected_batch, SPARSE_TOKENS[name], 256)
    assert dense.shape == (expected_batch, 256, 64, 64)
    assert encoded[0].shape == (3, SPARSE_TOKENS[name], 256)
    assert encoded[1].shape == (3, 256, 64, 64)


@pytest.mark.parametrize("name", list(PROMPTS))
def test_encoded_prompts_run_through_the_mask_decoder(name, prompt_side):
    prompt_encoder, mask_decoder = prompt_side
    prompts = [blob_prompt(name, blobs(), view=v).scaled(12.8, 12.8) for v in range(2)]
    with torch.no_grad():
        sparse, dense = decoder.encode_prompts(prompt_encoder, prompts)
        masks, iou = mask_decoder(
            image_embeddings=torch.randn(1, 256, 64, 64),
            image_pe=prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=PROMPTS[name].multimask,
        )
    outputs = 3 if PROMPTS[name].multimask else 1
    assert masks.shape == (2, outputs, 256, 256) and iou.shape == (2, outputs)


def test_to_sam_inputs_refuses_mixed_point_counts():
    full = blob_prompt("points", blobs(), points=2)
    all_water = blob_prompt("points", np.ones((8, 8), dtype=bool), points=2)
    with pytest.raises(ValueError, match="pad_points=True"):
        decoder.to_sam_inputs([full, all_water])
    with pytest.raises(ValueError, match="same number of points"):
        decoder.to_sam_inputs([blob_prompt("point", blobs()), full])
    no_prompt = Prompt(points=None, labels=None, box=None)
    with pytest.raises(ValueError, match="box"):
        decoder.to_sam_inputs([blob_prompt("box", blobs()), no_prompt])
    with pytest.raises(ValueError, match="at least one"):
        decoder.to_sam_inputs([])


def test_pad_points_pads_with_sams_not_a_point(prompt_encoder):
    full = blob_prompt("points", blobs(), points=2)
    all_water = blob_prompt("points", np.ones((8, 8), dtype=bool), points=2)
    (coords, labels), boxes = decoder.to_sam_inputs([full, all_water], pad_points=True)
    assert boxes is None
    assert labels.tolist() == [[1, 1, 0, 0], [1, 1, -1, -1]]
    assert coords[1, :2].tolist() == all_water.points.tolist()
    with torch.no_grad():
        sparse, _ = decoder.encode_prompts(prompt_encoder, [full, all_water], pad_points=True)
    not_a_point = prompt_encoder.not_a_point_embed.weight[0]
    assert sparse.shape == (2, 5, 256)
    assert torch.equal(sparse[1, 2], not_a_point) and torch.equal(sparse[1, 4], not_a_point)
