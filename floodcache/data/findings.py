"""The audit's findings ranked for a reader: what excludes a pair first, then the rarest
first, and last, on one line each, the findings on every pair or nearly (a trait of how the
data set was made, such as anti-aliased masks, rather than a fault of some files)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass

from floodcache.data.pairs import PROBLEMS, Problem

# A finding on at least this share of the pairs tells about the data set, not about a file:
# listed after the rare ones, as one line with its count.
NEARLY_EVERY = 0.9


@dataclass(frozen=True)
class Finding:
    """One problem code as the audit found it."""

    code: str  # a key of PROBLEMS
    rows: int  # audit rows (files) with the code
    pairs: int  # pairs with the code
    common: bool  # on NEARLY_EVERY of the pairs or more, and not blocking


def ranked(problems: list[Problem], pairs: int, blocking: Collection[str]) -> list[Finding]:
    """The codes found among `problems` of `pairs` pairs: the `blocking` ones (codes that
    exclude a pair; never a trait, however many pairs) first in PROBLEMS order, then the
    others from the rarest (fewest pairs) on, then the common ones."""
    rows: dict[str, int] = defaultdict(int)
    pairs_with: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for row in problems:
        rows[row.problem] += 1
        pairs_with[row.problem].add((row.image, row.mask))
    return ranked_counts(rows, {code: len(p) for code, p in pairs_with.items()}, pairs, blocking)


def ranked_counts(
    rows: dict[str, int], pairs_with: dict[str, int], pairs: int, blocking: Collection[str]
) -> list[Finding]:
    """`ranked` from counts: audit rows per code and pairs per code, as a cache records them."""
    order = list(PROBLEMS)
    found = [
        Finding(
            code,
            rows[code],
            pairs_with.get(code, 0),
            code not in blocking and pairs_with.get(code, 0) >= NEARLY_EVERY * pairs,
        )
        for code in rows
    ]

    def rank(finding: Finding) -> tuple:
        known = order.index(finding.code) if finding.code in order else len(order)
        excludes = finding.code in blocking
        return (finding.common, not excludes, 0 if excludes else finding.pairs, known)

    return sorted(found, key=rank)


def ranked_rows(problems: list[Problem], pairs: int, blocking: Collection[str]) -> list[Problem]:
    """`problems` in the order of their codes' rank (`ranked`), each code's rows in the
    audit's own order: the rows a reader must act on come before a common trait's many."""
    place = {finding.code: at for at, finding in enumerate(ranked(problems, pairs, blocking))}
    return sorted(problems, key=lambda row: place[row.problem])
