"""The report's uncertainty: seeded bootstrap intervals of means, paired comparisons, and the
flag on a split too small for a claim."""

from __future__ import annotations

import numpy as np
from scipy.stats import wilcoxon

from floodcache.report import statistics
from tests.helpers import expected_interval

VALUES = np.random.default_rng(7).random(30)


def test_an_interval_reproduces_from_its_seed_and_holds_the_mean():
    first, again = statistics.bootstrap(VALUES), statistics.bootstrap(VALUES.copy())
    assert first == again
    assert (first.low, first.high) == expected_interval(VALUES)
    assert first.low < first.mean == VALUES.mean() < first.high and first.n == 30
    assert statistics.bootstrap(VALUES, seed=1) != first  # the seed, not chance, fixes it


def test_a_wider_spread_gives_a_wider_interval():
    narrow = statistics.bootstrap(0.5 + 0.01 * VALUES)
    wide = statistics.bootstrap(VALUES)
    assert narrow.high - narrow.low < wide.high - wide.low


def test_one_view_has_no_interval_and_none_has_no_mean():
    one = statistics.bootstrap([0.4])
    assert (one.low, one.high) == (0.4, 0.4) and one.text() == "0.400 [1 view: no interval]"
    assert statistics.bootstrap([]) is None


def test_the_paired_change_is_the_mean_of_per_view_differences_with_wilcoxons_p():
    before = VALUES
    after = np.clip(VALUES + np.random.default_rng(8).normal(0.05, 0.1, 30), 0, 1)
    compared = statistics.paired(before, after)
    assert compared.difference.mean == (after - before).mean()
    assert (compared.difference.low, compared.difference.high) == expected_interval(after - before)
    assert compared.p == wilcoxon(after, before).pvalue
    assert compared.difference.signed().startswith(f"{(after - before).mean():+.3f} [")
    assert compared.p_clause() == f"Wilcoxon p = {compared.p:.3f}"


def test_identical_models_differ_nowhere():
    same = statistics.paired(VALUES, VALUES)
    assert same.difference.mean == 0 and same.p is None
    assert same.p_text() == "– (no view differs)" and same.p_clause() == "no view differs"
    assert statistics.paired([], []) is None


def test_fewer_than_twenty_views_are_flagged_in_bold():
    assert statistics.views_text(19) == "**only 19 views: too few (< 20) for a claim**"
    assert statistics.views_text(1).startswith("**only 1 view:")
    assert statistics.views_text(20) == "20 views"


def test_few_views_show_no_interval_that_the_paired_test_contradicts():
    """Two views that both improve: the bootstrap's interval excludes 0, yet the Wilcoxon
    test cannot reject anything on 2 views (p = 0.5). Below MIN_INTERVAL_VIEWS no interval."""
    compared = statistics.paired([0.40, 0.50], [0.42, 0.60])
    assert compared.difference.low > 0 and compared.p == 0.5  # the contradiction, computed
    assert compared.difference.signed() == "+0.060 [2 views: no interval]"
    enough = statistics.bootstrap(VALUES[: statistics.MIN_INTERVAL_VIEWS])
    assert enough.shown and enough.text().endswith(f"[{enough.low:.3f}, {enough.high:.3f}]")
