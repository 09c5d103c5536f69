"""The largest studentised difference over the pairs of a table's rows, under the null: simultaneous critical values
and the step-down's adjusted p-values, each with its numerical error, the same on every machine.

Under the null the rows' estimates are ``X ~ N(0, cov)`` and a pair's statistic is ``T_p = (X_i - X_j) / se_p / S``
with ``S^2 ~ chi2_df / df`` independent of ``X``: a multivariate t over the pairs. Write ``X = A xi`` with ``A`` the
**symmetric** square root of ``cov`` (``V sqrt(W) V'``: a function of the matrix, unique even where an eigenvalue
repeats, so it does not depend on which eigenvectors a BLAS/LAPACK kernel returns for it), and ``xi = R U`` with
``R ~ chi_k`` and the direction ``U`` uniform on the sphere, independent. Then ``|T_p| = (R / S) h_p(U)`` with
``h_p(U) = |a_p' A U| / se_p <= 1``, and

    P(max_p |T_p| > c) = E_U[ Q(c / max_p h_p(U)) ],   Q(x) = P(R / S > x),   (R / S)^2 / k ~ F(k, df)

(``chi2_k`` when ``df`` is infinite). The radius is integrated exactly; only the direction is integrated numerically
(the spherical-radial method: Deak 1980; Genz & Bretz 2009, "Computation of multivariate normal and t
probabilities", ch. 4), by randomised quasi-Monte Carlo: ``REPLICATES`` independent scramblings of a Sobol sequence
(``scipy.stats.qmc``), whose spread gives the standard error. An ``Estimate``'s ``error`` is ``ERROR_SE`` standard
errors. ``refine`` doubles the directions; ``decide`` refines until what a table prints is within half a unit of its
last digit, or until ``MOST`` directions per scrambling (then the table says the error it reached).

Against plain Monte Carlo of about the same cost (20,000 draws) the standard error of a critical value is 3 to 40
times smaller on the committed studies' families (``tests/test_maxt.py`` checks the stated errors). Nothing depends
on an eigenvector basis, a thread count or a random-number stream a platform may change: only rounding in the last
bits, far below what is printed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import special
from scipy.optimize import brentq
from scipy.stats import qmc, t

REPLICATES = 8  # independent scramblings: the standard error comes from their spread
FIRST = 2**10  # directions per scrambling at the first estimate (8,192 in all)
QUICK = 2**8  # per scrambling, for simulations that print rates, not these numbers (about 20,000 draws' precision)
MOST = 2**15  # where refinement stops (262,144 directions in all)
ERROR_SE = 3  # a stated numerical error is this many standard errors
SEED = 20240611
CHUNK = 2**8  # directions per scrambling handled at once (bounds the memory: chunk x replicates x pairs)


@dataclass(frozen=True)
class Estimate:
    """A number computed by numerical integration, and its error (``ERROR_SE`` standard errors; 0 when exact)."""

    value: float
    error: float


def symmetric_root(cov: np.ndarray) -> np.ndarray:
    """``A`` with ``A A' = cov`` and ``A = A'``: unique for a positive semi-definite ``cov``, whatever eigenvectors
    the decomposition returns inside a repeated eigenvalue's space. Eigenvalues at round-off level count as zero."""
    w, v = np.linalg.eigh(np.asarray(cov, dtype=float))
    top = max(float(w.max()), 0.0) if w.size else 0.0
    w = np.where(w > 1e-12 * top, w, 0.0)
    return (v * np.sqrt(w)) @ v.T


class RadialTail:
    """``Q(x) = P(R / S > x)`` for ``R ~ chi_k`` and ``S ~ sqrt(chi2_df / df)``, called with ``log x``: exact from the
    F (or chi-square) distribution, tabulated on a grid of ``log x`` and interpolated linearly (error below 1e-5,
    ``tests/test_maxt.py``); beyond the grid, exact."""

    GRID = 2**14
    LOW, HIGH = math.log(1e-3), math.log(1e4)

    def __init__(self, k: int, df: float) -> None:
        self.k, self.df = k, df
        self.log_x = np.linspace(self.LOW, self.HIGH, self.GRID)
        self.q = self.exact(self.log_x)
        self._slope = np.append(np.diff(self.q), 0.0)  # per grid step
        self._per_step = (self.GRID - 1) / (self.HIGH - self.LOW)

    def exact(self, log_x: np.ndarray) -> np.ndarray:
        x2 = np.exp(2 * np.asarray(log_x, dtype=float))  # log x = inf -> Q = 0
        if math.isfinite(self.df):
            return special.fdtrc(self.k, self.df, x2 / self.k)
        return special.chdtrc(self.k, x2)

    def __call__(self, log_x: np.ndarray) -> np.ndarray:
        # linear interpolation on the uniform grid by index arithmetic (9 times faster than np.interp's search);
        # below the grid: Q(1e-3), 1 to within 1e-6
        position = (log_x - self.LOW) * self._per_step
        np.clip(position, 0.0, self.GRID - 1, out=position)  # also maps nan-free infinities onto the grid's ends
        index = position.astype(np.intp)
        position -= index
        out = self.q[index] + position * self._slope[index]
        out[log_x == -np.inf] = 1.0  # x = 0: always exceeded
        far = log_x > self.HIGH
        if far.any():
            out[far] = self.exact(log_x[far])
        return out


@lru_cache(maxsize=64)
def directions(k: int, chunk: int) -> np.ndarray:
    """Unit directions in ``k`` dimensions, (REPLICATES, CHUNK, k): points ``chunk * CHUNK`` onwards of each
    scrambling's Sobol sequence, through the normal quantile, normalised. They depend on ``k`` only, so the families
    of a sweep or a simulation share them."""
    found = []
    for r in range(REPLICATES):
        engine = qmc.Sobol(k, scramble=True, seed=SEED + r)
        if chunk:  # scipy's fast_forward(0) fails
            engine.fast_forward(chunk * CHUNK)
        z = special.ndtri(np.clip(engine.random(CHUNK), 2.0**-54, 1 - 2.0**-54))
        found.append(z / np.linalg.norm(z, axis=1, keepdims=True))
    u = np.stack(found)
    u.flags.writeable = False
    return u


class MaxT:
    """The null distribution of ``max |T_p|`` over the family's pairs (multivariate t with the family's ``df``).

    Args:
        family: the rows (``decide.Family``).
        cov: the covariance of the row estimates (default: the family's).
        df: the t's degrees of freedom (default: ``family.effective_df()``; ``math.inf``: normal).
        t_obs: the pairs' observed statistics, for ``step_down`` (same order as ``family.pairs()``).
        needed: the pairs whose adjusted p-values are wanted (default: all); the step-down stops after the last.
        first: directions per scrambling of the first estimate (``FIRST``; ``QUICK`` in simulations).
    """

    def __init__(self, family, cov=None, df=None, t_obs=None, needed=None, first: int = FIRST) -> None:
        cov = family.cov() if cov is None else cov
        self.df = family.effective_df() if df is None else df
        self.pairs = family.pairs()
        k = family.k
        se = np.array([family.se(i, j, cov) for i, j in self.pairs])
        contrasts = np.zeros((len(self.pairs), k))
        for p, (i, j) in enumerate(self.pairs):
            if se[p] > 0:
                contrasts[p, i], contrasts[p, j] = 1 / se[p], -1 / se[p]
        self.loadings = contrasts @ symmetric_root(cov)  # (pairs, k): h_p(u) = |loadings[p] . u|
        self.degenerate = not np.any(self.loadings)  # no pair varies: every statistic is 0
        self.tail = RadialTail(k, self.df)
        self.t_obs = None if t_obs is None else np.abs(np.asarray(t_obs, dtype=float))
        if self.t_obs is not None:
            self.order = np.argsort(-self.t_obs, kind="stable")  # the step-down's order: largest first
            want = range(len(self.pairs)) if needed is None else needed
            positions = np.flatnonzero(np.isin(self.order, list(want)))
            self.steps = int(positions.max()) + 1 if positions.size else 0
            self._exceed = np.zeros((REPLICATES, self.steps))  # per scrambling: sums of Q(t_j / suffix max_j)
        self.k = k
        self._log_top: list[np.ndarray] = []  # chunks of (REPLICATES, n): log max_p h_p(u) per direction
        self.directions = 0  # per scrambling
        self._bracket: dict[float, tuple[float, float]] = {}  # alpha -> where its critical value was last found
        self._extend(first)

    def _extend(self, n: int) -> None:
        """Integrate over ``n`` more directions per scrambling (whole chunks, keeping Sobol's balance)."""
        assert n % CHUNK == 0, n
        for _ in range(n // CHUNK):
            u = directions(self.k, self.directions // CHUNK)  # (R, CHUNK, k)
            heights = np.abs(u @ self.loadings.T)  # (R, CHUNK, pairs)
            with np.errstate(divide="ignore"):  # a direction along which no pair varies: log 0 = -inf
                self._log_top.append(np.log(heights.max(axis=2)) if self.pairs else np.full(heights.shape[:2], -np.inf))
            if self.t_obs is not None and self.steps:
                ordered = heights[:, :, self.order]
                suffix = np.maximum.accumulate(ordered[:, :, ::-1], axis=2)[:, :, ::-1][:, :, : self.steps]
                t = np.broadcast_to(self.t_obs[self.order[: self.steps]], suffix.shape)
                with np.errstate(divide="ignore", invalid="ignore"):  # no pair left that varies: p = 1 at t = 0
                    log_x = np.where(suffix > 0, np.log(t) - np.log(suffix), np.where(t > 0, np.inf, -np.inf))
                self._exceed += self.tail(log_x.reshape(-1)).reshape(log_x.shape).sum(axis=1)
            self.directions += CHUNK

    def refine(self) -> bool:
        """Double the directions; ``False`` when already at ``MOST``."""
        if self.directions >= MOST:
            return False
        self._extend(self.directions)
        return True

    def critical(self, alpha: float) -> Estimate:
        """The simultaneous two-sided critical value: ``P(max |T| > c) = alpha``. Its error: each scrambling's
        exceedance at ``c``, spread over the scramblings, through the slope of the exceedance (linearised)."""
        if not self.pairs or self.degenerate:
            return Estimate(0.0, 0.0)
        log_top = np.concatenate(self._log_top, axis=1)  # (R, n)

        def exceedance(c: float) -> np.ndarray:  # per scrambling
            return self.tail(math.log(c) - log_top.reshape(-1)).reshape(log_top.shape).mean(axis=1)

        def excess(c: float) -> float:
            return float(exceedance(c).mean()) - alpha

        # between one pair's critical value and Bonferroni's over the pairs, or the last estimate's neighbourhood
        low, high = self._bracket.get(alpha) or self._bounds(alpha)
        if excess(low) < 0 or excess(high) > 0:
            low, high = 1e-6, 8.0
            while excess(high) > 0:
                high *= 2
        c = float(brentq(excess, low, high, xtol=1e-9, rtol=1e-12))  # far below any printed digit
        self._bracket[alpha] = (0.999 * c, 1.001 * c)
        h = 1e-4 * c
        slope = (exceedance(c + h).mean() - exceedance(c - h).mean()) / (2 * h)
        spread = float(np.std(exceedance(c), ddof=1)) / math.sqrt(REPLICATES)
        return Estimate(c, ERROR_SE * spread / abs(slope) if slope else math.inf)

    def _bounds(self, alpha: float) -> tuple[float, float]:
        """The critical value lies between the one-pair t quantile and Bonferroni's (slightly widened for the
        integration's own error); the root-finding starts there."""
        df = self.df if math.isfinite(self.df) else 1e12
        pairs = max(len(self.pairs), 1)
        return 0.98 * float(t.ppf(1 - alpha / 2, df)), 1.02 * float(t.ppf(1 - alpha / (2 * pairs), df))

    def step_down(self) -> list[Estimate | None]:
        """Adjusted p-values of the pairs (same order as ``pairs``; ``None`` after the last needed step): the free
        step-down max-T (Westfall 1997). Step ``j`` tests the ``j``-th largest statistic against the maximum over the
        pairs not yet rejected; the adjusted p-value is the running maximum of those."""
        if self.t_obs is None:
            raise ValueError("MaxT.step_down needs t_obs")
        n = self.directions
        raw = self._exceed / n  # (R, steps): per scrambling
        value, spread = raw.mean(axis=0), raw.std(axis=0, ddof=1) / math.sqrt(REPLICATES)
        found: list[Estimate | None] = [None] * len(self.pairs)
        running, error = 0.0, 0.0
        for j in range(self.steps):
            if value[j] >= running:  # monotone: a later step never rejects what an earlier one kept
                running, error = float(value[j]), ERROR_SE * float(spread[j])
            found[int(self.order[j])] = Estimate(min(running, 1.0), error)
        return found
