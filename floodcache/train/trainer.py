"""The decoder's training step: SAM's frozen prompt encoder, the trainable mask decoder, the
loss (BCE + Dice on the low-res logits over the image part of the padded frame, plus the IoU
head's squared error against each mask's real IoU, so that picking a mask by the IoU head
stays meaningful after fine-tuning) and one Adam step over a batch."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from floodcache.cache.reader import Cache
from floodcache.prompts import Prompt, PromptOptions, PromptStrategy
from floodcache.runtime import Runtime
from floodcache.sam import decoder as sam_decoder
from floodcache.sam.precision import DTYPES, autocast
from floodcache.train.batches import PromptDraw, Views, make_batches
from floodcache.train.config import TrainConfig


def losses(
    logits: torch.Tensor, iou_pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample, per-mask BCE + Dice, IoU-head MSE and real IoU.

    logits: BxCx256x256; iou_pred: BxC; target, valid: Bx1x256x256 float {0,1}.
    Returns (BxC segmentation loss, BxC IoU-head loss, BxC IoU), all over valid pixels only.
    """
    target = target.expand_as(logits)
    valid = valid.expand_as(logits)
    area = valid.sum(dim=(2, 3)).clamp(min=1)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none") * valid
    bce = bce.sum(dim=(2, 3)) / area
    prob = torch.sigmoid(logits) * valid
    dice = 1 - (2 * (prob * target).sum(dim=(2, 3)) + 1) / (
        prob.sum(dim=(2, 3)) + (target * valid).sum(dim=(2, 3)) + 1
    )
    hard = (logits > 0).float() * valid
    inter = (hard * target).sum(dim=(2, 3))
    union = (hard + target * valid).clamp(max=1).sum(dim=(2, 3))
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
    return bce + dice, (iou_pred - iou.detach()) ** 2, iou


def views_per_pass(device: torch.device, precision: str) -> int | None:
    """How many views of a batch the decoder takes at once: all (None) on a GPU; on a CPU,
    one fp32 view's worth of activations (1 view in fp32, 2 in bf16).

    One fp32 view's largest activation takes 8 MB, a batch of 16's 134 MB. Blocks that big
    come from the OS as fresh pages at every step (glibc maps blocks over 32 MB anew each
    time) and outgrow the caches; one view's are reused from the heap. On a CPU the page
    faults cost more than the matmuls a pass saves: a batch of 16 trains ~25% faster this way.
    """
    if device.type != "cpu":
        return None
    dtype = DTYPES[precision] or torch.float32
    return torch.float32.itemsize // dtype.itemsize


class DecoderTrainer:
    """The frozen prompt encoder, the trainable mask decoder and one step over a batch."""

    def __init__(self, cache: Cache, config: TrainConfig, runtime: Runtime):
        """`runtime`: the device and the training precision the command resolved."""
        self.device, self.precision = runtime.device, runtime.precision
        torch.manual_seed(config.seed)
        self.prompt_encoder = (
            sam_decoder.load_module(
                sam_decoder.build_prompt_encoder(), cache.sam_state("prompt_encoder")
            )
            .to(self.device)
            .eval()
        )
        self.prompt_encoder.requires_grad_(False)
        self.mask_decoder = sam_decoder.load_module(
            sam_decoder.build_mask_decoder(), cache.sam_state("mask_decoder")
        ).to(self.device)
        # fused: one kernel over all parameters instead of ~10 per tensor (CPU and CUDA)
        self.optimizer = torch.optim.Adam(self.mask_decoder.parameters(), lr=config.lr, fused=True)
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=config.step_size, gamma=config.gamma
        )
        self.views_per_pass = views_per_pass(self.device, self.precision)

    def step(
        self,
        strategy: PromptStrategy,
        views: Views,
        index: np.ndarray,
        prompts: list[Prompt],
        train: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch: (summed loss, summed IoU) over its views, 0-dim tensors left on the
        device (reading them waits for the GPU); updates the decoder when `train`.

        The batch goes through the decoder in passes of `views_per_pass` views (all at once
        when None); the gradient of the batch's mean loss is the sum of the passes' gradients,
        so the one Adam step sees the gradient of the whole batch, whatever the passes.
        """
        embeddings, target, valid = views.batch(index, self.device)
        self.mask_decoder.train(train)
        if train:
            self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.precision):
            encoded = sam_decoder.encode(self.prompt_encoder, prompts)
        total_loss = total_iou = torch.zeros((), device=self.device)
        size = self.views_per_pass or len(index)
        for start in range(0, len(index), size):
            part = slice(start, start + size)
            with torch.set_grad_enabled(train):
                loss, iou = self._view_losses(
                    strategy.multimask,
                    embeddings[part].float(),
                    encoded.select(part),
                    target[part],
                    valid[part],
                )
                if train:
                    (loss.sum() / len(index)).backward()
            total_loss, total_iou = total_loss + loss.detach().sum(), total_iou + iou.sum()
        if train:
            for parameter in self.mask_decoder.parameters():
                if parameter.grad is None:  # a mask token decode() left out: as SAM's
                    parameter.grad = torch.zeros_like(parameter)  # forward, a zero gradient
            self.optimizer.step()
        return total_loss, total_iou

    def _view_losses(
        self,
        multimask: bool,
        embeddings: torch.Tensor,
        prompts: sam_decoder.EncodedPrompts,
        target: torch.Tensor,
        valid: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per view of one pass (B views, shapes as `Views.batch`, embeddings float): the
        training loss and the IoU of the mask the IoU head picks, both B."""
        with autocast(self.device, self.precision):
            logits, iou_pred = sam_decoder.decode_encoded(
                self.mask_decoder, embeddings, prompts, multimask
            )
        logits, iou_pred = logits.float(), iou_pred.float()
        seg, iou_loss, iou = losses(logits, iou_pred, target, valid)
        # Ambiguous prompts: learn from the best of SAM's three masks (as SAM was trained).
        best = seg.argmin(dim=1)
        picked = iou_pred.argmax(dim=1)  # what inference would return: the IoU head's pick
        rows = torch.arange(len(seg), device=self.device)
        return seg[rows, best] + iou_loss.mean(dim=1), iou[rows, picked]

    def run_epoch(
        self,
        strategies: list[PromptStrategy],
        views: Views,
        config: TrainConfig,
        epoch: int,
        train: bool,
        bar: tqdm | None = None,
    ) -> tuple[float, float, int, int]:
        """Mean loss, mean IoU, views used and views skipped over one pass."""
        options = PromptOptions(
            points=config.points, box_jitter=config.box_jitter if train else 0.0
        )
        # Validation prompts are the same every epoch (epoch 0), so epochs compare fairly.
        draw = PromptDraw(config.seed, epoch if train else 0, options)
        batches, skipped = make_batches(strategies, views, draw, config.batch_size, shuffle=train)
        total_loss = total_iou = torch.zeros((), device=self.device)
        count = 0
        for strategy, index, prompts in batches:
            loss, iou = self.step(strategy, views, index, prompts, train)
            total_loss, total_iou, count = total_loss + loss, total_iou + iou, count + len(index)
            if bar is not None:
                bar.update(len(index))
        count_or_1 = max(count, 1)  # one wait for the GPU per epoch, not two per step
        return total_loss.item() / count_or_1, total_iou.item() / count_or_1, count, skipped
