"""How sure the report's means are: 95% bootstrap intervals of a mean over views, and the
paired comparison of two decoders on the same views and prompts.

The bootstrap resamples views with replacement, `RESAMPLES` times, from a Generator seeded
with `SEED` afresh for every interval: the same values give the same interval in every run,
whatever else the report computes first. The interval is the 2.5 and 97.5 percentiles of the
resampled means (percentile bootstrap).

The paired comparison takes each view's difference (fine-tuned minus pretrained, same view,
same prompt): its mean is the change, bootstrapped like any mean, and the Wilcoxon
signed-rank test (two-sided, scipy) asks whether the differences centre on zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

SEED = 0
RESAMPLES = 10_000  # enough that another seed moves an interval's ends in the third decimal
PERCENTILES = (2.5, 97.5)  # of the resampled means: the 95% interval's ends
FEW_VIEWS = 20  # fewer views than this cannot support a claim about a mean: flagged
# A percentile bootstrap's interval is too narrow on few views (with 2 it can exclude 0 where
# the paired test cannot reject anything): below this many, no interval is shown at all.
MIN_INTERVAL_VIEWS = 10


@dataclass(frozen=True)
class Interval:
    """A mean over `n` views with its 95% bootstrap interval [low, high]."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def shown(self) -> bool:
        """Whether the interval is valid enough to show (MIN_INTERVAL_VIEWS views or more)."""
        return self.n >= MIN_INTERVAL_VIEWS

    def bracket(self, sign: str = "") -> str:
        """`[0.430, 0.590]`; `[6 views: no interval]` below MIN_INTERVAL_VIEWS."""
        if not self.shown:
            return f"[{self.n} view{'' if self.n == 1 else 's'}: no interval]"
        return f"[{self.low:{sign}.3f}, {self.high:{sign}.3f}]"

    def text(self) -> str:
        """`0.512 [0.430, 0.590]`; `0.512 [6 views: no interval]` on few views."""
        return f"{self.mean:.3f} {self.bracket()}"

    def signed(self) -> str:
        """`+0.052 [+0.010, +0.090]`, for a change."""
        return f"{self.mean:+.3f} {self.bracket('+')}"


@dataclass(frozen=True)
class Paired:
    """Fine-tuned minus pretrained on the same `n` views: the mean difference with its
    interval, and the Wilcoxon signed-rank p-value (None when every difference is 0)."""

    difference: Interval
    p: float | None

    def p_text(self) -> str:
        """`0.062`, `< 0.001`, or `– (no view differs)`: a table's cell."""
        if self.p is None:
            return "– (no view differs)"
        return "< 0.001" if self.p < 0.001 else f"{self.p:.3f}"

    def p_clause(self) -> str:
        """`Wilcoxon p = 0.062`, `Wilcoxon p < 0.001`, or `no view differs`: for a sentence."""
        if self.p is None:
            return "no view differs"
        text = self.p_text()
        return f"Wilcoxon p {text}" if text.startswith("<") else f"Wilcoxon p = {text}"


def bootstrap(values: ArrayLike, seed: int = SEED, resamples: int = RESAMPLES) -> Interval | None:
    """The mean of 1-D `values` (one per view) and its percentile bootstrap interval; None
    for no values. One value gives a zero-width interval: nothing to resample."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return None
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, (resamples, values.size))].mean(axis=1)
    low, high = np.percentile(means, PERCENTILES)
    return Interval(float(values.mean()), float(low), float(high), int(values.size))


def paired(before: ArrayLike, after: ArrayLike, seed: int = SEED) -> Paired | None:
    """Compare two models' values of the same views (equal-length, same order)."""
    from scipy.stats import wilcoxon  # scipy is slow to import: only when comparing

    before, after = np.asarray(before, np.float64), np.asarray(after, np.float64)
    if before.shape != after.shape:
        raise ValueError(f"paired values differ in length: {before.shape} vs {after.shape}")
    difference = bootstrap(after - before, seed)
    if difference is None:
        return None
    p = None
    if np.any(after != before):
        p = float(wilcoxon(after, before, alternative="two-sided").pvalue)
    return Paired(difference, p)


def views_text(n: int) -> str:
    """`42 views`, or in bold `**only 6 views: too few (< 20) for a claim**`."""
    views = f"{n} view{'' if n == 1 else 's'}"
    return views if n >= FEW_VIEWS else f"**only {views}: too few (< {FEW_VIEWS}) for a claim**"
