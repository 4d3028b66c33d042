"""Room in /dev/shm, where embed's processes hand each other large arrays (torch's shared
memory lives there on Linux).

Docker gives /dev/shm 64 MB by default, and a process that runs out of it is killed (SIGBUS)
instead of getting an error; so each user asks first, and sends through pipes without room.
"""

from __future__ import annotations

import os


def room() -> int:
    """Bytes free in /dev/shm (0 where there is none, as on macOS)."""
    try:
        stats = os.statvfs("/dev/shm")
    except OSError:
        return 0
    return stats.f_bavail * stats.f_frsize
