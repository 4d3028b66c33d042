"""What `explore` is asked (`ExploreConfig`, checked when made). Torch- and polars-free, so that
the command line reads its defaults from here at once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from floodcache.settings import check_at_least

LOCAL_HOST = "127.0.0.1"


@dataclass
class ExploreConfig:
    """Everything `explore` needs: what to show, and where to serve it."""

    cache: Path = Path("cache/flood.h5")  # the cache the evaluation was made from
    evaluation: Path = Path("reports/flood")  # an evaluation folder written by `evaluate`
    # Fine-tuned run folders to answer with; default: every run the evaluation holds
    decoders: tuple[Path, ...] = ()
    host: str = LOCAL_HOST  # only this machine can read the images, unless told otherwise
    port: int = 8765  # 0 picks a free port
    device: str | None = None  # the decoders' torch device; default cuda when available
    max_points: int = 64  # points per prompt: more is a mistake, not a study
    max_body: int = 16 * 1024  # bytes of a request body: room for max_points and a box

    def __post_init__(self) -> None:
        check_at_least(self.port, 0, "--port")
        check_at_least(self.max_points, 1, "max_points")
        self.decoders = tuple(Path(run) for run in self.decoders)

    @property
    def local(self) -> bool:
        """Whether only this machine can reach the server."""
        return self.host in (LOCAL_HOST, "localhost", "::1")
