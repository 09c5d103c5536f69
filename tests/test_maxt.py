"""The integration behind every verdict's critical value and adjusted p-value (poolbench.analysis.maxt): right where
a kept library knows the answer, within the error it states, precise enough for the digits tables print, and free
of the eigenvector basis that made tables differ between BLAS kernels (issue: the same answer on every machine)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import studentized_range

from poolbench.analysis import decide, maxt
from poolbench.analysis.decide import Family
from poolbench.analysis.maxt import MaxT, RadialTail


def independent(k: int, df: float, n: int = 3) -> Family:
    return Family(list(range(k)), np.zeros(k), np.full(k, n), 1.0, df, np.zeros((k, k)))


def exchangeable(k: int = 5, df: int = 8) -> Family:
    """Rows whose test-set parts share one correlation: the covariance's eigenvalues repeat (0.7 four times here),
    as when the seed spread is pooled over the rows."""
    means = np.linspace(0.70, 0.69, k)
    test_cov = 0.3e-4 * np.ones((k, k)) + 0.2e-4 * np.eye(k)
    return Family(list(range(k)), means, np.full(k, 3), 1.5e-4, df, test_cov)


@pytest.mark.parametrize("k,df", [(2, 4), (5, 10), (5, math.inf), (8, 16), (12, 4)])
def test_critical_values_are_tukeys_within_the_stated_error(k, df):
    """Independent means, one variance: the max-T critical value is the studentised range's / sqrt(2) (scipy), to
    within the error the estimate states: three standard errors below 0.01, where 20,000 Monte Carlo draws have one
    standard error of 0.01 or more."""
    found = MaxT(independent(k, df), df=df).critical(0.05)
    tukey = studentized_range.ppf(0.95, k, df) / np.sqrt(2)
    assert abs(found.value - tukey) <= found.error, (found, tukey)
    assert 0 < found.error < 0.01


def test_a_refined_estimate_states_a_smaller_error_and_stays_within_it():
    family, tukey = independent(8, 10), studentized_range.ppf(0.99, 8, 10) / np.sqrt(2)
    integral = MaxT(family, df=10)
    first = integral.critical(0.01)
    assert integral.refine() and integral.refine() and integral.directions == 4 * maxt.FIRST
    refined = integral.critical(0.01)
    assert refined.error < first.error / 2 and abs(refined.value - tukey) <= refined.error


def step_down_by_brute_force(family: Family, t_obs: np.ndarray, draws: int = 1_000_000) -> np.ndarray:
    """The free step-down's adjusted p-values by plain Monte Carlo (Cholesky of a positive-definite covariance)."""
    rng = np.random.default_rng(7)
    cov, df, pairs = family.cov(), family.effective_df(), family.pairs()
    x = rng.standard_normal((draws, family.k)) @ np.linalg.cholesky(cov).T
    se = np.array([family.se(i, j) for i, j in pairs])
    t = (
        np.abs(np.stack([x[:, i] - x[:, j] for i, j in pairs], axis=1) / se)
        / np.sqrt(rng.chisquare(df, draws) / df)[:, None]
    )
    order = np.argsort(-np.abs(t_obs))
    suffix = np.maximum.accumulate(t[:, order][:, ::-1], axis=1)[:, ::-1]
    raw = np.maximum.accumulate(np.mean(suffix >= np.abs(t_obs[order]), axis=0))
    found = np.empty_like(raw)
    found[order] = raw
    return found


def test_adjusted_p_values_are_the_step_downs_within_the_stated_error():
    family = exchangeable()
    t_obs = np.array([0.4, 1.9, 2.6, 3.4, 1.5, 2.2, 3.0, 0.7, 1.1, 0.3])
    found = MaxT(family, t_obs=t_obs).step_down()
    reference = step_down_by_brute_force(family, t_obs)
    monte_carlo = 3 * np.sqrt(reference * (1 - reference) / 1_000_000)
    for estimate, truth, noise in zip(found, reference, monte_carlo, strict=True):
        assert abs(estimate.value - truth) <= estimate.error + noise, (estimate, truth)
    order = np.argsort(-t_obs)
    assert np.all(np.diff([found[i].value for i in order]) >= 0)  # larger statistics, smaller adjusted p


def test_the_step_down_stops_after_the_last_pair_asked_for():
    t_obs = np.array([0.4, 1.9, 2.6, 3.4, 1.5, 2.2, 3.0, 0.7, 1.1, 0.3])
    found = MaxT(exchangeable(), t_obs=t_obs, needed=[2]).step_down()  # the third largest statistic
    assert [i for i, p in enumerate(found) if p is not None] == [2, 3, 6]


def rotated_eigh(real):
    """``numpy.linalg.eigh`` as another BLAS kernel may answer it: the same eigenvalues, and eigenvectors turned
    inside the space of a repeated eigenvalue (an equally right answer)."""

    def eigh(a):
        w, v = real(a)
        v = v.copy()
        repeated = np.flatnonzero(np.isclose(w, np.median(w), rtol=1e-9))
        if len(repeated) > 1:
            turn, _ = np.linalg.qr(np.random.default_rng(3).standard_normal((len(repeated), len(repeated))))
            v[:, repeated] = v[:, repeated] @ turn
        return w, v

    return eigh


def test_verdicts_do_not_depend_on_the_eigenvectors_of_a_repeated_eigenvalue(monkeypatch):
    """The fault that made tables differ by CPU, on one machine: the eigenvectors of a repeated eigenvalue are
    arbitrary. The symmetric root is a function of the matrix, so the verdicts' numbers are the same to the last
    bits; a factor ``v sqrt(w)`` would change them by the integration's error."""
    family = exchangeable()
    w, v = np.linalg.eigh(family.cov())
    assert np.sum(np.isclose(w, np.median(w))) == 4  # the eigenvalue repeats
    before = decide.decide(family, 0.05, 0.005)
    real = np.linalg.eigh
    monkeypatch.setattr(np.linalg, "eigh", rotated_eigh(real))
    assert not np.allclose(np.linalg.eigh(family.cov())[1], v)  # the eigenvectors did turn
    after = decide.decide(family, 0.05, 0.005)
    assert after.critical == pytest.approx(before.critical, abs=1e-10)
    for a, b in zip(after.rows, before.rows, strict=True):
        assert a.kind is b.kind
        assert a.p_adjusted == pytest.approx(b.p_adjusted, abs=1e-10) if b.p_adjusted is not None else True
        assert np.allclose(a.interval, b.interval, atol=1e-12) if b.interval else a.interval is None
    factor = v * np.sqrt(np.clip(w, 0, None))  # the decomposition-dependent factor the tables used to draw with
    assert not np.allclose(factor, rotated_eigh(real)(family.cov())[1] * np.sqrt(np.clip(w, 0, None)))


def test_the_root_squares_to_the_covariance_also_when_singular():
    b = np.random.default_rng(0).standard_normal((5, 3))
    cov = b @ b.T  # rank 3
    root = maxt.symmetric_root(cov)
    assert np.allclose(root, root.T) and np.allclose(root @ root.T, cov, atol=1e-12)


@pytest.mark.parametrize("k", [2, 5, 20, 40])
@pytest.mark.parametrize("df", [1.5, 4.0, 30.0, math.inf])
def test_the_radial_tail_is_exact_to_1e5(k, df):
    """The interpolated tail errs by less than 1e-5 (a critical value by less than 1e-4 of its printed unit)."""
    tail = RadialTail(k, df)
    log_x = np.random.default_rng(k).uniform(tail.LOW - 1, tail.HIGH + 3, 20_000)
    assert np.max(np.abs(tail(log_x) - tail.exact(log_x))) < 1e-5
    assert tail(np.array([np.inf]))[0] == 0.0  # a direction along which no pair varies never exceeds


def test_tables_get_the_digits_they_print():
    """Wide intervals (a small test set) need more directions: ``decide`` refines until the intervals' ends, the
    floors and the adjusted p-values are within half a unit of their last printed digit; a simulation's quick
    look (``refine=False``) stops at the first estimate."""
    k = 12
    means = np.linspace(0.70, 0.66, k)
    test_cov = 4e-4 * (0.5 * np.ones((k, k)) + 0.5 * np.eye(k))  # test-set standard errors of 2 points
    family = Family(list(range(k)), means, np.full(k, 3), 6e-4, 22, test_cov)
    quick = decide.decide(family, 0.05, 0.005, refine=False)
    assert quick.precision.directions == maxt.QUICK and not quick.precision.within_print()
    found = decide.decide(family, 0.05, 0.005)
    assert found.precision.within_print() and found.precision.directions > maxt.FIRST
    assert found.precision.interval <= decide.HALF_UNIT and found.precision.floor <= decide.HALF_UNIT


def test_rows_that_never_differ_get_no_interval_width_and_p_one():
    family = Family(["a", "b"], np.array([0.7, 0.7]), np.array([3, 3]), 0.0, 4, np.zeros((2, 2)))
    found = decide.decide(family, 0.05, 0.005)
    assert found.critical == 0.0
    other = found.rows[1 - found.best]
    assert other.p_adjusted == 1.0 and other.interval == (0.0, 0.0)


def test_adjusted_p_values_print_to_the_digits_their_error_allows():
    assert [decide.p_text(p) for p in (0.0004, 0.0123, 0.0999, 0.1, 0.456)] == [
        "<0.001",
        "0.012",
        "0.100",
        "0.10",
        "0.46",
    ]
    assert decide.p_half_unit(0.05) == 0.0005 and decide.p_half_unit(0.5) == 0.005
