"""The decision rules: one home for what a table, the report and the adaptive-seeds sweeper claim, and the error each
claim controls. See README "Reading a verdict".

The rows of a table form one **family**: every row with at least two seeds, on one test set. A row's mean over its
seeds varies, in a rerun, with the seeds and with the test examples, and its covariance with the other rows' means
is estimated in two parts (``Family``):

- **seeds**: the seed-to-seed spread of the metric, pooled over the rows. When the rows share seeds (``seed=1`` of
  every row trained with the same data order and initialisation), a two-way layout, rows x seeds with additive seed
  effects fitted by least squares (a randomised block design; missing cells allowed, as the adaptive sweeper leaves
  them): the rows' effects are compared with the seeds' common part removed, and the residual variance has ``df = N
  - rows - seeds + 1``. Rows that share no seeds: a one-way layout, ``df = sum(n_r - 1)``.
- **test examples**: the covariance, over bootstrap resamples of the test examples (every model resampled with the
  same examples), of the means the rows would have over infinitely many seeds: the covariance between *different*
  models only, so the models' own noise on these examples, already in the seed spread, is not counted twice.

**Comparisons with the best.** The best row is chosen by the data, so every pair of rows is in the family of
hypotheses: a step-down max-T test over all pairwise differences (Westfall 1997; Hothorn, Bretz & Westfall 2008, the
"free" step-down of R's ``multcomp``) with the multivariate t of the pairs' correlation and the degrees of freedom
of ``Family.effective_df``. It controls the family-wise error over all pairwise claims, so the chance that any row
as good as the best is called worse is at most ``alpha``, whichever row the data made best. The degrees of freedom
are Welch-Satterthwaite's with the seed variance at its upper 90% bound in the weights (``Family.effective_df``):
the tails stay calibrated with few seeds at the levels the step-down uses, where Satterthwaite's own df, computed
from the estimates, is too light. The critical values and adjusted p-values come from ``poolbench.analysis.maxt``
(the radius exactly, the direction by randomised quasi-Monte Carlo with a stated error), refined until every interval
and equivalence floor a table prints is within half a unit of its last digit (``HALF_UNIT``) and every adjusted
p-value within half a unit of the last decimal ``p_text`` prints: the same printed table on every machine;
``scipy.stats.studentized_range`` gives the same value where both apply.

**Equivalence** (``tied (±m)``): two one-sided tests against every other row with the simultaneous interval: no row
is more than ``m`` above this one. The chance that any row called tied is in truth more than ``m`` below the best is
at most ``alpha``. The **equivalence floor** is the smallest margin the test set can confirm however many seeds are
run (the seed part gone, the test part left).

**Sequential designs** (``poolbench.analysis.sequential``) spend ``alpha`` over the looks with ``spent``; each
look's claims are made at its own increment, so by the union bound the error over all looks stays at most ``alpha``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from poolbench.analysis import maxt as integration


class Kind(StrEnum):
    """A row's verdict against the best row of its table (the value is what tables and records say)."""

    BEST = "best"
    TIED = "tied"  # within the margin of the best: shown by the equivalence test
    WORSE = "worse"  # shown below the best
    CLEARLY_WORSE = "clearly worse"  # shown below the best by more than the margin
    INCONCLUSIVE = "inconclusive"  # neither shown different nor shown within the margin
    ONE_SEED = "one seed"  # outside the family: its seed spread is unknown, it gets no verdict
    IDENTICAL = "identical"  # the same predictions as an earlier row at every seed: one model, two names
    NA = "n/a"  # nothing to compare (no test predictions)

    def cell(self, margin_points: float) -> str:
        m = f"{margin_points:.2f}"
        return {
            "tied": f"tied (±{m})",
            "clearly worse": f"worse > {m}",
            "one seed": "1 seed: examples only",
            "identical": "identical predictions",
        }.get(self.value, self.value)


SHOWN = (Kind.TIED, Kind.WORSE, Kind.CLEARLY_WORSE)  # verdicts that are claims: a sequential design stops there


def points(fraction: float) -> float:
    """Metric units (fractions, 0.005) to the points tables and configs speak (0.5): the one conversion."""
    return fraction * 100


def fraction(points_value: float) -> float:
    return points_value / 100


HALF_UNIT = fraction(0.005)  # half a unit of the last printed digit of intervals and floors (points, 2 decimals)


def p_text(p: float) -> str:
    """An adjusted p-value as tables print it: 3 decimals below 0.1, 2 above (where a third digit says nothing and
    would cost the integration 10 times more directions), ``<0.001`` below that."""
    return "<0.001" if p < 0.001 else f"{p:.{3 if p < 0.1 else 2}f}"


def p_half_unit(p: float) -> float:
    """Half a unit of the last digit ``p_text`` prints."""
    return 0.0005 if p < 0.1 else 0.005


def controlled(alpha: float, margin: float) -> str:
    """The one line under a table that says what its verdicts control."""
    a, m = f"{alpha * 100:g}%", f"{points(margin):.2f}"
    return (
        f"Controlled: the chance that any row as good as the best is called worse is at most {a}, and the chance "
        f"that any row called tied (±{m}) is in truth more than {m} points below the best is at most {a}, "
        "whichever row the data made best (all pairs, step-down max-T)."
    )


@dataclass
class Family:
    """The rows of one table as sufficient statistics: means, seeds, the two variance parts."""

    names: list
    means: np.ndarray  # (k,) the rows' estimates (the means over seeds; seed effects removed in a two-way layout)
    n: np.ndarray  # (k,) seeds per row
    seed_var: float  # the pooled seed-to-seed variance of one model's metric
    df: int  # its degrees of freedom
    test_cov: np.ndarray  # (k, k) test-set covariance of the rows' infinite-seed means
    seed_cov: np.ndarray | None = None  # (k, k) seed part of the estimates' covariance (default: seed_var / n)
    layout: str = "one-way"  # or "two-way" (rows x seeds)

    @property
    def k(self) -> int:
        return len(self.names)

    def cov(self, n: np.ndarray | None = None, seed_var: float | None = None) -> np.ndarray:
        """Covariance of the row means (``n`` seeds each; default: as run)."""
        if n is None and seed_var is None and self.seed_cov is not None:
            return self.seed_cov + self.test_cov
        n = self.n if n is None else n
        v = self.seed_var if seed_var is None else seed_var
        return np.diag(v / np.asarray(n, dtype=float)) + self.test_cov

    def se(self, i: int, j: int, cov: np.ndarray | None = None) -> float:
        """The standard error of ``mean_i - mean_j``; 0 where its variance is round-off (below 1e-12 of the two rows'
        own: rows with the same predictions), so that no kernel's last bits decide whether a pair varies."""
        c = self.cov() if cov is None else cov
        var = c[i, i] + c[j, j] - 2 * c[i, j]
        return float(np.sqrt(var)) if var > 1e-12 * (abs(c[i, i]) + abs(c[j, j])) else 0.0

    def pairs(self) -> list[tuple[int, int]]:
        return [(i, j) for i in range(self.k) for j in range(i + 1, self.k)]

    def effective_df(self) -> float:
        """The t's degrees of freedom: Welch-Satterthwaite for "seed part (``df``) + test part (known)", with the seed
        variance at its upper 90% confidence bound in the weights, and the smallest over the pairs. Plain
        Welch-Satterthwaite, computed from the estimate, makes the tails too light when the seeds dominate and their
        spread came out small (p < 0.0125 three times too often at 3 seeds); this bound keeps every level at or below
        its nominal rate for 2 to 8 df, whatever the share of the seeds (``tests/test_stats.py``), and tends to the
        seed part's ``df`` when the seeds dominate."""
        if not self.df or not math.isfinite(self.seed_var) or self.seed_var <= 0:
            return float(self.df) if self.df else math.inf
        upper = chi2_bound(self.df)
        seed = self.cov() - self.test_cov
        smallest = math.inf
        for i, j in self.pairs():
            a = upper * max(seed[i, i] + seed[j, j] - 2 * seed[i, j], 0.0)
            v = max(self.test_cov[i, i] + self.test_cov[j, j] - 2 * self.test_cov[i, j], 0.0)
            if a > 0:
                smallest = min(smallest, self.df * (a + v) ** 2 / a**2)
        return smallest


def chi2_bound(df: int, level: float = 0.9) -> float:
    """How many times its estimate a variance with ``df`` degrees of freedom may be, at the upper ``level`` bound."""
    from scipy.stats import chi2

    return df / float(chi2.ppf(1 - level, df))


def pooled(values: list[np.ndarray]) -> tuple[float, int]:
    """The within-row variance pooled over rows, and its degrees of freedom."""
    ss = sum(float(np.sum((v - v.mean()) ** 2)) for v in values if len(v) > 1)
    df = sum(len(v) - 1 for v in values)
    return (ss / df if df > 0 else math.nan), df


def between_models_cov(boots: list[dict]) -> np.ndarray:
    """(k, k) covariance of the rows' infinite-seed means over test-set resamples, from ``boots`` (per row:
    seed -> bootstrap replicates of that model's metric, every model resampled with the same examples). Only pairs of
    different models (different seeds) enter, so a model's own noise on these examples is not counted here."""
    centred = [{s: b - b.mean() for s, b in row.items()} for row in boots]
    n_boot = len(next(iter(centred[0].values())))
    sums = [np.sum(list(row.values()), axis=0) for row in centred]
    k = len(boots)
    cov = np.zeros((k, k))
    for i in range(k):
        for j in range(i, k):
            shared = set(centred[i]) & set(centred[j])
            same = sum(float(centred[i][s] @ centred[j][s]) for s in shared)
            count = len(centred[i]) * len(centred[j]) - len(shared)
            value = (float(sums[i] @ sums[j]) - same) / (n_boot - 1) / count if count else math.nan
            cov[i, j] = cov[j, i] = value
    return _nearest_psd(cov)


def _nearest_psd(cov: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(np.nan_to_num(cov))
    return (v * np.clip(w, 0, None)) @ v.T


@dataclass
class Decision:
    """One row's verdict at a level ``alpha``."""

    kind: Kind
    p_adjusted: float | None = None  # step-down max-T, against the best
    interval: tuple[float, float] | None = None  # row - best, simultaneous at 1 - alpha
    floor: float | None = None  # equivalence floor against the best, metric units


@dataclass(frozen=True)
class Precision:
    """The numerical error (``maxt.ERROR_SE`` standard errors) of what a verdict prints, and the directions the
    integration took per scrambling."""

    interval: float = 0.0  # of the intervals' ends, metric units
    floor: float = 0.0  # of the equivalence floors, metric units
    p_adjusted: float = 0.0  # as a share of half a unit of the last digit printed (<= 1: within)
    directions: int = 0

    def within_print(self) -> bool:
        """Below half a unit of every printed last digit."""
        return self.interval <= HALF_UNIT and self.floor <= HALF_UNIT and self.p_adjusted <= 1

    def worst(self, other: Precision) -> Precision:
        return Precision(
            max(self.interval, other.interval),
            max(self.floor, other.floor),
            max(self.p_adjusted, other.p_adjusted),
            max(self.directions, other.directions),
        )


@dataclass
class Decisions:
    best: int
    rows: list[Decision]
    critical: float  # simultaneous critical value at alpha
    alpha: float
    margin: float
    precision: Precision = field(default_factory=Precision)


def best_of(means: np.ndarray) -> int:
    """The row with the best mean. Means equal up to round-off (1e-9, far below any printed digit: two rows with the
    same predictions, whose fitted means differ in the last bits a LAPACK kernel leaves) are a tie, won by the first
    row, so that the choice is the same on every machine."""
    top = float(np.max(means))
    return int(np.flatnonzero(np.asarray(means) >= top - 1e-9)[0])


def decide(family: Family, alpha: float, margin: float, refine: bool = True) -> Decisions:
    """Every row of the family against the best: worse (step-down), worse by more than ``margin`` (simultaneous
    interval beyond it), tied within ``margin`` (no row more than ``margin`` above it, simultaneously), else
    inconclusive. ``refine``: integrate until what is printed is within half a unit of its last digit (tables);
    ``False``: the first estimate only (simulations, which print rates, not these numbers)."""
    k, best = family.k, best_of(family.means)
    cov = family.cov()
    pairs = family.pairs()
    se = {p: family.se(*p, cov) for p in pairs}
    t_obs = np.array([(family.means[i] - family.means[j]) / se[(i, j)] if se[(i, j)] > 0 else 0.0 for i, j in pairs])
    needed = [n for n, pair in enumerate(pairs) if best in pair]
    widest = max((se[pairs[n]] for n in needed), default=0.0)
    first = integration.FIRST if refine else integration.QUICK
    maxt = integration.MaxT(family, cov, t_obs=t_obs, needed=needed, first=first)
    while True:
        critical, adjusted = maxt.critical(alpha), maxt.step_down()
        p_error = max((adjusted[n].error / p_half_unit(adjusted[n].value) for n in needed), default=0.0)
        if not refine or (critical.error * widest <= HALF_UNIT and p_error <= 1) or not maxt.refine():
            break
    c = critical.value
    floors, floor_error = equivalence_floors(family, alpha, refine)
    precision = Precision(critical.error * widest, floor_error, p_error, maxt.directions)

    def upper(j: int, i: int) -> float:  # simultaneous upper bound of mean_j - mean_i
        return family.means[j] - family.means[i] + c * se[(min(i, j), max(i, j))]

    rows = []
    for i in range(k):
        if i == best:
            rows.append(Decision(Kind.BEST, floor=None))
            continue
        pair = (min(i, best), max(i, best))
        d = float(family.means[i] - family.means[best])
        interval = (d - c * se[pair], d + c * se[pair])
        p = adjusted[pairs.index(pair)].value
        if p <= alpha:
            kind = Kind.CLEARLY_WORSE if interval[1] < -margin else Kind.WORSE
        elif all(upper(j, i) < margin for j in range(k) if j != i):
            kind = Kind.TIED
        else:
            kind = Kind.INCONCLUSIVE
        rows.append(Decision(kind, p, interval, floors[i]))
    return Decisions(best, rows, c, alpha, margin, precision)


def equivalence_floors(family: Family, alpha: float, refine: bool = True) -> tuple[list[float | None], float]:
    """Per row, against the best: the smallest margin its equivalence test could confirm with infinitely many seeds
    and a difference of exactly 0 (the simultaneous critical value times the test-set part of the standard error);
    and the floors' numerical error (metric units)."""
    best = best_of(family.means)
    test_only = family.test_cov + np.eye(family.k) * 1e-12
    widest = max((family.se(i, best, family.test_cov) for i in range(family.k) if i != best), default=0.0)
    maxt = integration.MaxT(family, test_only, df=math.inf, first=integration.FIRST if refine else integration.QUICK)
    while (c := maxt.critical(alpha)).error * widest > HALF_UNIT and refine and maxt.refine():
        pass
    floors = [None if i == best else c.value * family.se(i, best, family.test_cov) for i in range(family.k)]
    return floors, c.error * widest


def spent(alpha: float, fraction_now: float, fraction_before: float, spending: str = "pocock") -> float:
    """The part of ``alpha`` a look spends (Lan & DeMets 1983): the spending function's increase from the previous
    look's information fraction to this one's. ``pocock``: alpha ln(1 + (e - 1) t), more early; ``obrien_fleming``:
    2 - 2 Phi(z_{alpha/2} / sqrt t), almost nothing early."""
    from scipy.stats import norm

    def a(t: float) -> float:
        if t <= 0:
            return 0.0
        t = min(t, 1.0)
        if spending == "pocock":
            return alpha * math.log(1 + (math.e - 1) * t)
        if spending == "obrien_fleming":
            return float(2 - 2 * norm.cdf(norm.ppf(1 - alpha / 2) / math.sqrt(t)))
        raise ValueError(f"spending: {spending!r}; allowed: pocock, obrien_fleming")

    return a(fraction_now) - a(fraction_before)


def conditional_power(d: float, se_now: float, se_final: float, critical_final: float, margin: float) -> dict:
    """If the row goes on to its final number of seeds, the chance (under the current estimate of its difference to
    the best, ``d`` <= 0) that it is then shown worse, or shown within ``margin`` (Brownian-motion conditional power,
    e.g. Jennison & Turnbull 2000, ch. 10)."""
    from scipy.stats import norm

    gap = abs(d)
    reachable_tie = margin - critical_final * se_final  # > 0: the equivalence test can still pass at the end
    if se_final >= se_now - 1e-12:  # more seeds would not shrink the interval
        worse = float(gap > critical_final * se_final)
        tied = float(gap < reachable_tie)
    else:
        spread = se_final * math.sqrt(max(1 - se_final**2 / se_now**2, 1e-12))
        worse = float(norm.cdf((gap - critical_final * se_final) / spread))
        tied = float(norm.cdf((reachable_tie - gap) / spread)) if reachable_tie > 0 else 0.0
    return {"worse": worse, "tied": tied}


def family_from(names: list, rows: list[dict]) -> Family:
    """The family of ``rows`` (per row: seed -> an object with ``observed`` and ``boot``, the model's metric on the
    test set and on the shared bootstrap resamples of it); every row needs at least two seeds."""
    values = [np.array([r.observed for r in row.values()]) for row in rows]
    cov = between_models_cov([{s: r.boot for s, r in row.items()} for row in rows])
    n = np.array([len(v) for v in values])
    two_way = two_way_fit(rows)
    if two_way is not None:
        means, seed_var, df, unit = two_way
        return Family(list(names), means, n, seed_var, df, cov, seed_var * unit, "two-way")
    seed_var, df = pooled(values)
    return Family(list(names), np.array([v.mean() for v in values]), n, seed_var, df, cov)


def two_way_fit(rows: list[dict]) -> tuple[np.ndarray, float, int, np.ndarray] | None:
    """Rows x seeds, additive: ``m_rs = mu_r + beta_s + e``, by least squares on the cells there are. Returns the rows'
    estimates (centred on the mean of the row means, so that they read as means), the residual variance, its df and
    the rows' covariance per unit of it; ``None`` when the rows share too few seeds for residual degrees of freedom."""
    seeds = sorted({s for row in rows for s in row}, key=str)
    k, cells = len(rows), [(r, seeds.index(s), row[s].observed) for r, row in enumerate(rows) for s in row]
    df = len(cells) - k - len(seeds) + 1
    if df < 1 or len(seeds) < 2:
        return None
    x = np.zeros((len(cells), k + len(seeds) - 1))  # row effects, then seed effects with the first seed as base
    y = np.array([c[2] for c in cells])
    for i, (r, s, _) in enumerate(cells):
        x[i, r] = 1.0
        if s > 0:
            x[i, k + s - 1] = 1.0
    xtx_inv = np.linalg.pinv(x.T @ x)
    beta = xtx_inv @ x.T @ y
    residual = y - x @ beta
    if np.linalg.matrix_rank(x) < x.shape[1]:  # rows that share no seed with the others: not a two-way layout
        return None
    effects, unit = beta[:k], xtx_inv[:k, :k]
    raw = np.array([np.mean([c[2] for c in cells if c[0] == r]) for r in range(k)])
    effects = effects - effects.mean() + raw.mean()
    return effects, float(residual @ residual) / df, df, unit


def contrast(family: Family, i: int, j: int) -> tuple[float, float, float, float]:
    """``mean_j - mean_i`` alone (no multiplicity): (difference, standard error, df, two-sided p) with Student t on
    ``effective_df``: the Δ column of a table."""
    from scipy.stats import t

    d, se, df = float(family.means[j] - family.means[i]), family.se(i, j), family.effective_df()
    p = float(2 * t.sf(abs(d) / se, df)) if se > 0 else float(d == 0)
    return d, se, df, p
