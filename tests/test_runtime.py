import pytest
import torch

from floodcache.runtime import Group, Runtime, joined


def test_a_runtime_holds_the_device_and_the_precision_auto_became_there():
    runtime = Runtime.resolve("cpu", "auto", "train")
    assert runtime.device == torch.device("cpu")
    assert runtime.precision == "fp32"
    assert runtime.group == Group()
    assert Runtime.resolve("cpu", "bf16", "train").precision == "bf16"  # asked: kept


def test_a_precision_the_stage_does_not_take_is_refused_before_any_work():
    with pytest.raises(ValueError, match="fp16"):
        Runtime.resolve("cpu", "fp16", "train")


def test_without_torchrun_the_command_runs_as_a_group_of_one(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with joined("cpu", "auto") as runtime:
        assert (runtime.group.rank, runtime.group.world) == (0, 1)
        assert runtime.group.leader
        assert runtime.group.share([1, 2, 3]) == [1, 2, 3]


def test_each_process_of_a_group_takes_every_world_th_batch_and_an_unbroken_span():
    second = Group(rank=1, world=2, local_rank=1)
    assert second.share([0, 1, 2, 3, 4]) == [1, 3]
    assert second.spans(5) == [range(0, 2), range(2, 5)]
    assert second.device("cpu") == "cpu"  # a device asked for is kept
