"""What `bench` measures and prints: a stage's row (views/s, peak memory, ratio to the
reference), the table and its JSON, and how a stage is timed and its peak memory taken."""

from __future__ import annotations

import logging
import resource
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

log = logging.getLogger(__name__)


@dataclass
class Row:
    stage: str
    precision: str
    batch: int
    views: int
    seconds: float
    peak_mb: float
    ratio: float = 0.0  # views/s over the reference's (the training step's for training)
    rel_error: float | None = None  # embeddings against the fp32 reference
    mask_iou: float | None = None  # box-prompted masks against the fp32 reference's
    note: str = ""

    @property
    def views_per_second(self) -> float:
        return self.views / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        err = f"{self.rel_error:8.1e}" if self.rel_error is not None else " " * 8
        iou = f"{self.mask_iou:6.3f}" if self.mask_iou is not None else " " * 6
        return (
            f"{self.stage:26s} {self.precision:5s} {self.batch:5d} {self.views_per_second:9.3f} "
            f"{self.peak_mb:8.0f} {self.ratio:8.2f} {err} {iou}  {self.note}"
        )


@dataclass
class Bench:
    """Everything `bench` measured: a table to print, JSON to keep."""

    device: str
    model_type: str
    weights: str
    views: int
    rows: list[Row] = field(default_factory=list)
    compression: list[dict] = field(default_factory=list)
    writing: dict = field(default_factory=dict)
    precision_note: str = ""  # on a CPU, what --precision auto picks there and why

    def add(self, *rows: Row) -> None:
        """Keep measured rows (the reference's two come first), with their ratio to the
        reference's views/s, and log each at once: a run cut short still shows them."""
        self.rows += rows
        reference, training = self.rows[0], self.rows[min(1, len(self.rows) - 1)]
        for row in rows:
            if row.stage not in ("embed readers alone", "cache read", "explore"):  # no encoder
                base = training if row.stage.startswith(("train", "iterate")) else reference
                row.ratio = row.views_per_second / base.views_per_second
            log.info("measured: %s", row.line())

    def table(self) -> str:
        lines = [
            f"bench: SAM {self.model_type} on {self.device}, {self.views} views, {self.weights}",
            f"{'stage':26s} {'prec':5s} {'batch':>5s} {'views/s':>9s} {'peak MB':>8s} "
            f"{'x ref':>8s} {'rel err':>8s} {'IoU':>6s}  note",
        ]
        lines[1:1] = [self.precision_note] if self.precision_note else []
        lines += [row.line() for row in self.rows]
        lines.append("cache: float16 embeddings, one HDF5 chunk per view")
        for c in self.compression:
            lines.append(
                f"  {c['filter']:15s} {c['bytes_per_view'] / 2**20:6.3f} MiB/view "
                f"({c['saved']:5.1%} saved)  write {c['write_ms_per_view']:7.2f} ms/view  "
                f"read {c['read_ms_per_view']:7.2f} ms/view"
            )
        if w := self.writing:
            lines.append(
                f"cache writing, {w['views']} views in parts of {w['batch']}: in line "
                f"{w['in_line_ms_per_view']:.2f} ms/view; writer processes and assembler "
                f"{w['background_ms_per_view']:.2f} ms/view ({w['speedup']:.2f}x), "
                f"main process CPU {w['main_cpu_ms_per_view']:.2f} ms/view"
            )
        return "\n".join(lines)

    def to_json(self) -> dict:
        rows = [asdict(r) | {"views_per_second": r.views_per_second} for r in self.rows]
        fields = {k: v for k, v in asdict(self).items() if k != "rows"}
        return fields | {"torch": torch.__version__, "rows": rows}


class PeakMemory:
    """Peak memory of one stage: CUDA's max_memory_allocated, else this process's peak RSS.

    On Linux the RSS peak is reset per stage (/proc/self/clear_refs); elsewhere it is the peak
    since the process started (resource.getrusage).
    """

    held = 0  # bytes `hold_gpu_memory` keeps allocated: not the stage's, not counted

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def megabytes(self) -> float:
        if self.device.type == "cuda":
            return (torch.cuda.max_memory_allocated(self.device) - self.held) / 2**20
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def hold_gpu_memory(device: torch.device, free_gib: float | None) -> Iterator[str]:
    """Allocate all of a GPU's free memory but `free_gib` GiB, so that the run inside sees a
    smaller card (an 8 GB laptop GPU has ~7.5 GiB free): batch sizes come from that, and
    running out of it is a real out-of-memory error. Yields words for the table's title."""
    if free_gib is None or device.type != "cuda":
        yield ""
        return
    torch.cuda.empty_cache()  # memory cached from earlier work would count as free
    free = torch.cuda.mem_get_info(device)[0]
    keep = int(free_gib * 2**30)
    if free <= keep:
        yield f" ({free / 2**30:.1f} GiB free, less than the {free_gib:g} GiB asked)"
        return
    held = torch.empty(free - keep, dtype=torch.uint8, device=device)
    PeakMemory.held = held.numel()
    try:
        yield f" (acting as a card with {free_gib:g} GiB free)"
    finally:
        PeakMemory.held = 0
        del held
        torch.cuda.empty_cache()


def timed(device: torch.device, run: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    result = run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return result, time.perf_counter() - start
