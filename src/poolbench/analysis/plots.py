"""Plots of an ablation table: bars with error bars, confusion matrices, and the critical-difference diagram."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from poolbench.analysis.table import Table
from poolbench.analysis.tasks import Ranking


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_bars(table: Table, path: Path) -> Path:
    plt = _pyplot()
    labels = [" / ".join(map(str, r.key)) or "all runs" for r in table.rows]  # values only: short ticks
    fig, axes = plt.subplots(1, len(table.metrics), figsize=(4 + 1.2 * len(labels), 4), squeeze=False)
    for ax, m in zip(axes[0], table.metrics, strict=True):
        means = [r.stats.get(m, (math.nan,))[0] * 100 for r in table.rows]
        stds = [r.stats.get(m, (0, 0))[1] * 100 for r in table.rows]
        ax.bar(range(len(labels)), means, yerr=stds, capsize=4, color="#4c72b0")
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        ax.set_xlabel(" / ".join(table.by))
        ax.set_ylabel(f"{m} (%)")
        low = min(v - s for v, s in zip(means, stds, strict=True))
        ax.set_ylim(max(0, low - 5), None)
    return _save(plt, fig, path)


def plot_confusions(table: Table, path: Path) -> Path:
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(table.rows), figsize=(3.2 * len(table.rows), 3.4), squeeze=False)
    for ax, row in zip(axes[0], table.rows, strict=True):
        cm = np.sum([r.record.confusion_matrix["rows_true_cols_pred"] for r in row.runs], axis=0)
        names = row.runs[0].record.label_names
        ax.imshow(cm / np.maximum(cm.sum(1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
        for i in range(len(names)):
            for j in range(len(names)):
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_title(" / ".join(map(str, row.key)) or "all runs", fontsize=8)
    return _save(plt, fig, path)


def plot_critical_difference(ranking: Ranking, path: Path) -> Path:
    """Mean ranks across tasks; rows joined by a bar cannot be told apart (Nemenyi's test after Friedman's)."""
    import pandas as pd
    import scikit_posthocs as sp

    plt = _pyplot()
    names = [" / ".join(map(str, key)) for key in ranking.rows]
    if not ranking.omnibus_rejects:  # Demšar (2006): the post-hoc test only after the omnibus test rejects
        fig, ax = plt.subplots(figsize=(6, 1.2))
        ax.axis("off")
        ax.text(
            0.5,
            0.5,
            f"No critical-difference diagram: Iman-Davenport p = {ranking.iman_davenport_p:.3g} "
            f"(>= {ranking.alpha:g}),\nthe rows' ranks over {len(ranking.tasks)} tasks cannot be told apart",
            ha="center",
            va="center",
            fontsize=9,
        )
        return _save(plt, fig, path)
    means = pd.DataFrame(ranking.means, columns=names)  # (tasks, rows): blocks x groups
    significance = sp.posthoc_nemenyi_friedman(means)
    fig, ax = plt.subplots(figsize=(6, 1.0 + 0.3 * len(names)))
    sp.critical_difference_diagram(pd.Series(ranking.mean_ranks, index=names), significance, ax=ax)
    ax.set_title(f"mean rank by {ranking.metric} over {len(ranking.tasks)} tasks (1 = best)", fontsize=9)
    return _save(plt, fig, path)
