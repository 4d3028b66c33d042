"""Small markdown formatters shared by the report's sections."""

from __future__ import annotations

import re

from floodcache.prompts import PROMPTS


def table(header: list[str], rows: list[list]) -> list[str]:
    """A GitHub markdown table as lines."""
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def relative(new: float | None, old: float | None) -> str:
    """The relative change from `old` to `new` in percent, `n/a` when `old` is 0 or missing."""
    if new is None or old is None or old == 0:
        return "n/a"
    return f"{100 * (new - old) / old:+.1f} %"


def code(text: str) -> str:
    """`text` as an inline code span, whatever backticks it holds (CommonMark: a longer run of
    backticks fences it, and a space pads a text that starts or ends with one)."""
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def slug(text: str) -> str:
    """`text` made safe for a file name."""
    return re.sub(r"[^\w.+-]", "_", text)


def prompt_title(prompt: str) -> str:
    """A prompt strategy's name in code style, with * when it is an oracle prompt."""
    return f"`{prompt}`*" if PROMPTS[prompt].oracle else f"`{prompt}`"
