"""The decision rules (poolbench.analysis.decide): tails that hold with few seeds at the levels the step-down uses,
alpha spent over the looks, and the verdict words. The critical values themselves: tests/test_maxt.py."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2, t

from poolbench.analysis import decide, sequential
from poolbench.analysis.decide import Kind


def tail_rates(nu: int, share: float, bound: bool, draws: int = 100_000) -> tuple[float, float]:
    """P(p < 0.0125) / 0.0125 and P(p < 0.05) / 0.05 under the null, for "seed part (nu df, share of the variance)
    + known test part", with the effective df as poolbench computes it (bound) or plain Welch-Satterthwaite."""
    rng = np.random.default_rng(nu)
    d, w = rng.standard_normal(draws), rng.chisquare(nu, draws) / nu
    seed, test = share * w, 1 - share
    weights = seed * (decide.chi2_bound(nu) if bound else 1.0)
    df = np.minimum(np.where(weights > 0, nu * (weights + test) ** 2 / np.maximum(weights, 1e-300) ** 2, 1e6), 1e6)
    p = 2 * t.sf(np.abs(d / np.sqrt(seed + test)), df)
    return float(np.mean(p < 0.0125) / 0.0125), float(np.mean(p < 0.05) / 0.05)


@pytest.mark.parametrize("nu", [2, 4, 8])
def test_the_tails_hold_at_the_step_down_levels_with_few_seeds(nu):
    """Welch-Satterthwaite from the estimates is too light in the tails when the seeds dominate (the old rule: p <
    0.0125 up to three times too often at 2 df); with the seed variance at its upper 90% bound in the weights, every
    share of the seeds stays at or below the nominal rates (Monte Carlo error ~3%)."""
    shares = (0.05, 0.2, 0.4, 0.6, 0.8, 0.95, 1.0)
    for share in shares:
        strict, five = tail_rates(nu, share, bound=True)
        assert strict <= 1.06 and five <= 1.04, (nu, share, strict, five)
    if nu == 2:
        assert max(tail_rates(nu, s, bound=False)[0] for s in shares) > 2  # the problem the bound removes
    assert decide.chi2_bound(nu) == pytest.approx(nu / chi2.ppf(0.1, nu))


def test_alpha_is_spent_over_the_looks_and_no_more():
    for spending in ("pocock", "obrien_fleming"):
        design = sequential.Design(3, 10, 0.05, 0.005, spending)
        levels = [level for _, level in sequential.spending_table(design)]
        assert sum(levels) == pytest.approx(0.05) and all(level > 0 for level in levels)
    pocock = sequential.Design(3, 10).level(3)
    assert pocock == pytest.approx(0.05 * np.log(1 + (np.e - 1) * 0.3))
    assert sequential.Design(3, 10, spending="obrien_fleming").level(3) < pocock / 10  # almost nothing early
    with pytest.raises(ValueError, match="spending: 'linear'; allowed: pocock, obrien_fleming"):
        sequential.Design(spending="linear")
    with pytest.raises(ValueError, match="need 2 <= min_seeds <= max_seeds"):
        sequential.Design(1, 10)


def test_conditional_power_says_when_more_seeds_cannot_help():
    # the test-set part dominates: ten seeds barely shrink the interval, a small gap can never be shown
    futile = decide.conditional_power(-0.002, se_now=0.0045, se_final=0.0043, critical_final=3.5, margin=0.005)
    assert futile["worse"] < 0.01 and futile["tied"] == 0.0  # 3.5 x 0.43 points > the margin: no tie either
    hopeful = decide.conditional_power(-0.03, se_now=0.012, se_final=0.006, critical_final=3.5, margin=0.005)
    assert hopeful["worse"] > 0.9


def test_verdict_words_and_the_one_unit():
    assert Kind.TIED.cell(0.5) == "tied (±0.50)" and Kind.CLEARLY_WORSE.cell(0.5) == "worse > 0.50"
    assert Kind.ONE_SEED.cell(0.5) == "1 seed: examples only" and Kind.INCONCLUSIVE.cell(0.5) == "inconclusive"
    assert decide.points(decide.fraction(0.5)) == pytest.approx(0.5) and decide.fraction(0.5) == 0.005
    assert "at most 5%" in decide.controlled(0.05, 0.005) and "(±0.50)" in decide.controlled(0.05, 0.005)
