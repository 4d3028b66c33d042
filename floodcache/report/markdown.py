"""Small markdown formatters shared by the report's sections."""

from __future__ import annotations

import re
from urllib.parse import quote

from floodcache.prompts import PROMPTS

# CommonMark shows a backslash-escaped ASCII punctuation mark as itself, and `<` as `&lt;` in
# HTML: no tag, link, emphasis or table cell can come out of an escaped name
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
_BARE_PIPE = re.compile(r"(?<!\\)\|")


def text(value: object) -> str:
    """`value` (a name from the user's files, folders or options, or a recorded config) as
    literal markdown text: every ASCII punctuation mark escaped, line breaks as spaces."""
    return _PUNCTUATION.sub(r"\\\1", " ".join(str(value).splitlines()))


def code(value: object) -> str:
    """`value` as an inline code span that no backtick inside it ends (code spans show `<`
    as text in HTML); line breaks as spaces."""
    value = " ".join(str(value).splitlines())
    ticks = "`" * (max(map(len, re.findall("`+", value)), default=0) + 1)
    return f"{ticks} {value} {ticks}" if "`" in value else f"{ticks}{value}{ticks}"


def fence(body: str, info: str = "") -> list[str]:
    """A fenced code block holding `body` as text, its fence longer than any backtick run in
    it, so that no line of `body` closes it."""
    ticks = "`" * max(3, max(map(len, re.findall("`+", body)), default=0) + 1)
    return [ticks + info, body, ticks]


def link(label: str, target: str) -> str:
    """A markdown link to a relative path; `label` is escaped, `target` percent-encoded."""
    return f"[{text(label)}]({quote(target, safe='/+')})"


def table(header: list[str], rows: list[list]) -> list[str]:
    """A GitHub markdown table as lines; a `|` inside a cell (in a code span) stays in it."""

    def cells(values: list) -> str:
        return "| " + " | ".join(_BARE_PIPE.sub(r"\|", str(cell)) for cell in values) + " |"

    return [cells(header), "|" + " --- |" * len(header), *map(cells, rows)]


def relative(new: float | None, old: float | None) -> str:
    """The relative change from `old` to `new` in percent, `n/a` when `old` is 0 or missing."""
    if new is None or old is None or old == 0:
        return "n/a"
    return f"{100 * (new - old) / old:+.1f} %"


def slug(text: str) -> str:
    """`text` made safe for a file name."""
    return re.sub(r"[^\w.+-]", "_", text)


def prompt_title(prompt: str) -> str:
    """A prompt strategy's name in code style, with * when it is an oracle prompt."""
    oracle = prompt in PROMPTS and PROMPTS[prompt].oracle
    return f"{code(prompt)}*" if oracle else code(prompt)
