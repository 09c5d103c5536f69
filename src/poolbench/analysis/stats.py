"""Statistics of test predictions: metrics on resampled test sets, and the comparison of two rows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def macro_f1(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """Macro-F1 along the last axis (works on a batch of resamples, shape (..., N))."""
    scores = []
    for c in range(num_classes):
        tp = np.sum((labels == c) & (preds == c), axis=-1)
        fp = np.sum((labels != c) & (preds == c), axis=-1)
        fn = np.sum((labels == c) & (preds != c), axis=-1)
        denom = 2 * tp + fp + fn
        scores.append(np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0))
    return np.mean(scores, axis=0)


def accuracy(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    return np.mean(labels == preds, axis=-1)


METRIC_FUNCTIONS = {"test/acc": accuracy, "test/f1_macro": macro_f1}


@dataclass
class Comparison:
    diff: float
    low: float
    high: float
    p_value: float
    seeds: list

    @property
    def within_noise(self) -> bool:
        return self.low <= 0 <= self.high


def paired_bootstrap(
    a: dict, b: dict, metric: str, num_classes: int, n_boot: int = 2000, seed: int = 0
) -> Comparison | None:
    """Difference ``b - a`` of a test metric, with a 95% CI and a two-sided p-value.

    ``a`` and ``b`` map seed -> (labels, predictions). Only seeds both have are used; each resample draws one
    set of test examples, applied to every seed of both rows, and the metric is averaged over seeds.
    """
    fn = METRIC_FUNCTIONS.get(metric)
    shared = sorted(set(a) & set(b), key=str)
    if fn is None or not shared:
        return None
    n = len(a[shared[0]][0])
    for s in shared:
        if len(a[s][0]) != n or len(b[s][0]) != n or not np.array_equal(a[s][0], b[s][0]):
            raise ValueError(f"seed {s}: the two rows were not tested on the same examples")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    labels = a[shared[0]][0]
    observed = np.mean([fn(labels, b[s][1], num_classes) - fn(labels, a[s][1], num_classes) for s in shared])
    boot = np.mean(
        [fn(labels[idx], b[s][1][idx], num_classes) - fn(labels[idx], a[s][1][idx], num_classes) for s in shared],
        axis=0,
    )
    low, high = np.percentile(boot, [2.5, 97.5])
    p = min(1.0, 2 * min(np.mean(boot <= 0), np.mean(boot >= 0)))
    return Comparison(float(observed), float(low), float(high), float(p), shared)
