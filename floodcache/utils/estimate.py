"""How long a long step will take, said before most of it runs: from the first units it
measured on this machine, never from a constant."""

from __future__ import annotations

# What a CPU user can do instead of waiting: both are in the README.
CPU_ALTERNATIVES = (
    "on a GPU this takes minutes (docs/performance.md has measured rates); the pipeline "
    "check (README: --model-type vit_tiny --limit 12) shows every step working in far less"
)


def duration(seconds: float) -> str:
    """`seconds` as a person reads it: '40 s', '12 min', '3 h 05 min'."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def estimate_line(unit: str, measured: int, seconds: float, remaining: int, cpu: bool) -> str:
    """'about 2 h 10 min for the 862 views left (9.0 s a view, measured on the first 2)'.
    `seconds` is what the first `measured` units took, start-up included: the estimate errs
    long. On a CPU the line also says what is quicker."""
    per_unit = seconds / max(measured, 1)
    article = "an" if unit[0] in "aeiou" else "a"
    line = (
        f"about {duration(per_unit * remaining)} for the {remaining} {unit}s left "
        f"({per_unit:.3g} s {article} {unit}, measured on the first {measured})"
    )
    return f"{line}; {CPU_ALTERNATIVES}" if cpu else line
