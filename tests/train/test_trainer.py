"""The training step: a batch in passes follows the whole batch's gradient."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from floodcache.cache.reader import Cache
from floodcache.prompts import PROMPTS, PromptOptions
from floodcache.runtime import Runtime
from floodcache.train.batches import Views, lowres_prompt
from floodcache.train.config import TrainConfig
from floodcache.train.trainer import DecoderTrainer, views_per_pass


@pytest.mark.parametrize("name", ["point", "box"])
def test_a_step_in_passes_follows_the_gradient_of_the_whole_batch(train_cache, tmp_path, name):
    """A CPU decodes a batch a few views at a time: the loss, IoU and gradient are the batch's."""
    strategy = PROMPTS[name]
    with Cache.open(train_cache) as cache:
        views = Views(cache, "train", in_memory=True)
        index = np.arange(len(views))
        prompts = [lowres_prompt(strategy, views, int(i), 0, 1, PromptOptions()) for i in index]
        index = index[[p is not None for p in prompts]]
        prompts = [p for p in prompts if p is not None]
        results = {}
        for passes in (None, 1, 3):
            settings = TrainConfig(train_cache, tmp_path, device="cpu")
            trainer = DecoderTrainer(cache, settings, Runtime.resolve("cpu", "auto", "train"))
            trainer.views_per_pass = passes
            totals = trainer.step(strategy, views, index, prompts, train=True)
            grads = {k: p.grad for k, p in trainer.mask_decoder.named_parameters()}
            results[passes] = totals, grads
    whole_totals, whole_grads = results[None]
    scale = max(grad.abs().max() for grad in whole_grads.values())
    for passes in (1, 3):
        totals, grads = results[passes]
        torch.testing.assert_close(totals, whole_totals, rtol=1e-5, atol=0)
        for key, grad in grads.items():
            torch.testing.assert_close(grad, whole_grads[key], rtol=1e-4, atol=1e-5 * scale)


def test_a_cpu_decodes_one_fp32_view_at_a_time():
    assert views_per_pass(torch.device("cpu"), "fp32") == 1
    assert views_per_pass(torch.device("cpu"), "bf16") == 2  # half the bytes per activation
    assert views_per_pass(torch.device("cuda"), "fp32") is None  # the whole batch
