"""Statistics of test predictions: metrics on resampled test sets, the comparison of two rows, verdicts.

A row is a setting trained with several seeds and tested on one test set. A rerun of the study would draw new
seeds *and* (from the same population) new test examples, so the difference of two rows' means varies with both.
``compare`` (the default, ``seeds``) counts both sources, as Bouthillier et al. (2021, "Accounting for variance in
machine learning benchmarks") ask; ``examples`` is the older paired bootstrap over test examples with the seeds
held fixed: an interval for *these trained models on this test set*. See README "Ablation tables".

The ``seeds`` interval is the two-row case of the verdicts' family (``poolbench.analysis.decide.Family``): the
seed part is the seed-to-seed variance pooled over the rows (a two-way fit, rows x seeds, when they share seeds),
the test part the covariance of the rows' means over bootstrap resamples of the test examples between different
models (every model resampled with the same examples). The interval is ``d ± t_{0.975, df} se`` with the family's
``effective_df`` (Welch-Satterthwaite with the seed variance at its upper 90% bound): with 3 seeds the t quantile is
large when the seeds dominate, as it must be. (A bootstrap over 3 seeds has only 10 distinct resamples and shrinks
their spread by a third.) ``poolbench.analysis.simulate`` checks the coverage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _counts(codes: np.ndarray, num_classes: int) -> np.ndarray:
    """Confusion counts (rows, K, K) of (label * K + prediction) codes (rows, N), by one ``bincount``."""
    rows, cells = codes.shape[0], num_classes * num_classes
    flat = codes + (np.arange(rows) * cells)[:, None]
    return np.bincount(flat.ravel(), minlength=rows * cells).reshape(rows, num_classes, num_classes)


def confusions(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """Confusion counts (..., K, K), true class by predicted, of labels and predictions along the last axis
    (shape (..., N): a batch of resamples at once)."""
    codes = np.asarray(labels) * num_classes + np.asarray(preds)
    lead = codes.shape[:-1]
    return _counts(codes.reshape(-1, codes.shape[-1]), num_classes).reshape(*lead, num_classes, num_classes)


def macro_f1_of(counts: np.ndarray) -> np.ndarray:
    """Macro-F1 of confusion counts (..., K, K)."""
    tp = np.diagonal(counts, axis1=-2, axis2=-1)
    fp, fn = counts.sum(axis=-2) - tp, counts.sum(axis=-1) - tp
    denom = 2 * tp + fp + fn
    return np.mean(np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0), axis=-1)


def accuracy_of(counts: np.ndarray) -> np.ndarray:
    """Accuracy of confusion counts (..., K, K)."""
    return np.trace(counts, axis1=-2, axis2=-1) / counts.sum(axis=(-2, -1))


def macro_f1(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """Macro-F1 along the last axis (works on a batch of resamples, shape (..., N))."""
    return macro_f1_of(confusions(labels, preds, num_classes))


def accuracy(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    return np.mean(labels == preds, axis=-1)


METRIC_FUNCTIONS = {"test/acc": accuracy, "test/f1_macro": macro_f1}
FROM_COUNTS = {accuracy: accuracy_of, macro_f1: macro_f1_of}  # the same numbers, from confusion counts


@dataclass
class Resampled:
    """One model's metric on the test set (``observed``) and on each bootstrap resample of it (``boot``)."""

    observed: float
    boot: np.ndarray  # (n_boot,)


def resample(fn, labels: np.ndarray, preds: np.ndarray, idx: np.ndarray, num_classes: int) -> Resampled:
    """``fn`` on the test set and on the resamples ``idx`` (n_boot, N), shared by every model of a table. The
    metrics of ``FROM_COUNTS`` come from each resample's confusion counts: one gather of a (label, prediction) code
    per example and one ``bincount``, the same numbers as ``fn`` on the gathered arrays."""
    observed = float(fn(labels, preds, num_classes))
    if fn not in FROM_COUNTS:
        return Resampled(observed, fn(labels[idx], preds[idx], num_classes))
    codes = np.asarray(labels) * num_classes + np.asarray(preds)
    return Resampled(observed, FROM_COUNTS[fn](_counts(codes[idx], num_classes)))


def draw(n_examples: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """The example resamples of one table (every model is resampled with the same ones: pairing by example)."""
    return np.random.default_rng(seed).integers(0, n_examples, size=(n_boot, n_examples))


@dataclass
class Comparison:
    """``b - a`` of a metric: the difference of the means over seeds, with its uncertainty.

    ``method`` says what the interval accounts for: ``seeds`` (seeds and test examples; ``df`` for the t quantile)
    or ``examples`` (test examples only, the seeds held fixed: a percentile bootstrap, ``boot``).
    """

    diff: float
    se: float
    df: float
    p_value: float
    method: str
    pairing: str  # "paired over 3 seeds", "unpaired: 3 and 2 seeds", "1 seed: examples only", ...
    boot: np.ndarray | None = None

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        if self.boot is not None:
            tail = 100 * (1 - level) / 2
            low, high = np.percentile(self.boot, [tail, 100 - tail])
            return float(low), float(high)
        from scipy.stats import t

        half = float(t.ppf(0.5 + level / 2, self.df)) * self.se if self.se > 0 else 0.0
        return self.diff - half, self.diff + half

    @property
    def low(self) -> float:
        return self.interval()[0]

    @property
    def high(self) -> float:
        return self.interval()[1]

    @property
    def within_noise(self) -> bool:
        return self.low <= 0 <= self.high


def compare(a: dict, b: dict, method: str = "seeds") -> Comparison | None:
    """Compare two rows, each ``seed -> Resampled`` (resampled with the same examples). ``None``: nothing to compare.

    ``seeds`` with two or more seeds in each row: the two-row family of ``poolbench.analysis.decide`` (seed spread
    pooled over the rows, test-set part between models, Student t on the family's effective df). A row with one
    seed has no seed spread: the difference of the rows' means with a bootstrap over test examples only, and says so.
    """
    if not a or not b:
        return None
    if method == "examples":
        shared = sorted(set(a) & set(b), key=str)
        return _examples_only(a, b, shared, "examples only") if shared else None
    if len(a) < 2 or len(b) < 2:
        return one_seed(a, b)
    from poolbench.analysis import decide

    family = decide.family_from(["a", "b"], [a, b])
    return in_family(family, 0, 1)


def in_family(family, i: int, j: int) -> Comparison:
    """``row j - row i`` of a ``decide.Family``, alone (no multiplicity): the Δ column of a table."""
    from poolbench.analysis import decide

    diff, se, df, p = decide.contrast(family, i, j)
    seeds = (
        f"{int(family.n[i])} and {int(family.n[j])} seeds"
        if family.n[i] != family.n[j]
        else f"{int(family.n[i])} seeds"
    )
    return Comparison(
        diff, se, df, p, "seeds", f"{seeds}, seed spread pooled over {family.k} rows ({family.layout}, df {family.df})"
    )


def one_seed(a: dict, b: dict) -> Comparison:
    """A row with one seed: the difference of the displayed means, test examples resampled (seeds unknown)."""
    observed = float(np.mean([r.observed for r in b.values()]) - np.mean([r.observed for r in a.values()]))
    boot = np.mean([r.boot for r in b.values()], axis=0) - np.mean([r.boot for r in a.values()], axis=0)
    p = min(1.0, 2 * min(np.mean(boot <= 0), np.mean(boot >= 0)))
    return Comparison(
        observed, float(np.std(boot, ddof=1)), np.inf, float(p), "examples", "1 seed: examples only", boot
    )


def _examples_only(a: dict, b: dict, seeds: list, pairing: str) -> Comparison:
    observed = float(np.mean([b[s].observed - a[s].observed for s in seeds]))
    boot = np.mean([b[s].boot - a[s].boot for s in seeds], axis=0)
    p = min(1.0, 2 * min(np.mean(boot <= 0), np.mean(boot >= 0)))
    return Comparison(observed, float(np.std(boot, ddof=1)), np.inf, float(p), "examples", pairing, boot)


def compare_rows(
    labels: np.ndarray, a: dict, b: dict, fn, num_classes: int, n_boot: int = 2000, seed: int = 0, method: str = "seeds"
) -> Comparison | None:
    """``compare`` from predictions: ``a`` and ``b`` map seed -> predictions on the test ``labels``."""
    idx = draw(len(labels), n_boot, seed)
    resampled = [{s: resample(fn, labels, p, idx, num_classes) for s, p in row.items()} for row in (a, b)]
    return compare(*resampled, method=method)


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (same order as given)."""
    order = np.argsort(p_values)
    k, adjusted, running = len(p_values), [0.0] * len(p_values), 0.0
    for step, i in enumerate(order):
        running = max(running, min(1.0, (k - step) * p_values[i]))
        adjusted[i] = running
    return adjusted
