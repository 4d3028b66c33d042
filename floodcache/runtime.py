"""Where a command's stages run: the device, the precision and the torchrun group, resolved
once when the command starts (`Runtime`) and handed to the stages, which pick nothing again.

Several `embed` (or `predict`) processes may be started by torchrun: under `torchrun
--nproc-per-node N cli.py embed ...` every process runs the same command; the environment
(RANK, WORLD_SIZE, LOCAL_RANK) says which share is its own. Without torchrun this is a group
of one and nothing here talks to anybody.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import torch
import torch.distributed as dist

from floodcache.sam.precision import pick_device, resolve_precision

T = TypeVar("T")


@dataclass(frozen=True)
class Group:
    """This process's place among the processes torchrun started for one command."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def leader(self) -> bool:
        """Rank 0 takes the lock, checks the existing cache and assembles the final file."""
        return self.rank == 0

    def device(self, asked: str | None) -> str | None:
        """One GPU per process on a multi-GPU machine: cuda:<local rank> unless told otherwise."""
        if asked or self.world == 1 or not torch.cuda.is_available():
            return asked
        return f"cuda:{self.local_rank}"

    def share(self, batches: list) -> list:
        """This process's batches: every world-th one, starting at its rank."""
        return batches[self.rank :: self.world]

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def from_leader(self, value: T) -> T:
        """The leader's `value`, on every process (pickled through the process group)."""
        if self.world == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: object) -> list:
        """Every process's `value`, in rank order, on every process."""
        if self.world == 1:
            return [value]
        values: list[object] = [None] * self.world
        dist.all_gather_object(values, value)
        return values

    def spans(self, count: int) -> list[range]:
        """Each process's share of `count` consecutive items, in rank order: one unbroken
        run of them each (empty for some when there are fewer items than processes)."""
        return [
            range(count * r // self.world, count * (r + 1) // self.world) for r in range(self.world)
        ]


def join() -> Group:
    """The group this process belongs to; starts torch.distributed under torchrun.

    The gloo backend serves CPU runs (and the tests), NCCL serves GPUs.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Group()
    group = Group(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(group.local_rank)
        dist.init_process_group(backend)
    return group


def leave(group: Group) -> None:
    """Shut the process group down cleanly at the end of the command."""
    if group.world > 1 and dist.is_initialized():
        dist.destroy_process_group()


@dataclass(frozen=True)
class Runtime:
    """Where and how this process runs a command's stages: its device, the precision resolved
    for it (never `auto`), and its torchrun group."""

    device: torch.device
    precision: str  # fp32, fp16 or bf16: what `auto` became on `device`
    group: Group = field(default_factory=Group)

    @classmethod
    def resolve(
        cls, device: str | None, precision: str, stage: str = "encoder", group: Group | None = None
    ) -> Runtime:
        """`device` as asked (else this process's GPU, else the CPU) and `precision` for
        `stage` (a key of `settings.STAGE_PRECISIONS`) on it; ValueError for a precision the
        stage does not take."""
        group = group or Group()
        chosen = pick_device(group.device(device))
        return cls(chosen, resolve_precision(precision, chosen, stage), group)


@contextmanager
def joined(device: str | None, precision: str, stage: str = "encoder") -> Iterator[Runtime]:
    """The runtime of this process inside its torchrun group (`join`), the group left
    (`leave`) when the command ends, however it ends."""
    group = join()
    try:
        yield Runtime.resolve(device, precision, stage, group)
    finally:
        leave(group)
