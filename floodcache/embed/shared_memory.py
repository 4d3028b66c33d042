"""Room in /dev/shm, where embed's processes hand each other large arrays (torch's shared
memory lives there on Linux), and page-locking such memory for CUDA.

Docker gives /dev/shm 64 MB by default, and a process that runs out of it is killed (SIGBUS)
instead of getting an error; so each user asks first, and sends through pipes without room.
"""

from __future__ import annotations

import os

import torch


def room() -> int:
    """Bytes free in /dev/shm (0 where there is none, as on macOS)."""
    try:
        stats = os.statvfs("/dev/shm")
    except OSError:
        return 0
    return stats.f_bavail * stats.f_frsize


def page_lock(block: torch.Tensor) -> bool:
    """Page-lock `block`'s memory for CUDA, so that copies between it and the GPU go straight
    there, without the host's help; False where CUDA refuses (or there is none)."""
    if not torch.cuda.is_available():
        return False
    error = torch.cuda.cudart().cudaHostRegister(block.data_ptr(), block.nbytes, 0)
    return int(error) == 0


def page_unlock(block: torch.Tensor) -> None:
    """Undo `page_lock`, once the GPU has finished every copy from or into the memory."""
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaHostUnregister(block.data_ptr())
