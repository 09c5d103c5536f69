"""Runs on several tasks (data sets, or domains of one): a table per task, and a ranking across them.

A task is what the runs were tested on: the ``data`` choice and the data settings that vary between runs (a
file, a hub name, ``data.domains``, ...), but not the training settings of the data module (batch size, ...).
Across tasks each row gets its rank per task by the primary metric's mean (1 = best, ties shared), the mean
rank, Friedman's test of "all rows rank alike" and Iman & Davenport's F form of it (the one Demšar 2006,
"Statistical comparisons of classifiers over multiple data sets", recommends: Friedman's chi-square is conservative
with few tasks), and only when that rejects, a critical-difference diagram (scikit-posthocs, Nemenyi). Ranks of means
ignore the noise within each task, so each row is also compared with the best-ranked row by the Wilcoxon signed-rank
test over the tasks (scipy; Holm over the rows, as Benavoli, Corani & Mangili 2016 advise instead of mean-rank
post-hoc tests) and by its per-task verdicts, which resample seeds and test examples within each task. What each
resamples: the verdicts, seeds and examples; Friedman, Iman-Davenport and Wilcoxon, tasks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from poolbench.analysis.runs import Run
from poolbench.analysis.table import Table, build_table, row_label, varying_keys

# settings of the data module that change how a model is trained, not what it is tested on
DATA_TRAINING_SETTINGS = (
    "data.batch_size",
    "data.eval_batch_size",
    "data.num_workers",
    "data.group_by_length",
    "data.max_length",
)


@dataclass
class Ranking:
    metric: str
    rows: list[tuple]  # the rows present in every task
    tasks: list[str]
    means: np.ndarray  # (tasks, rows): the metric's mean over seeds
    ranks: np.ndarray  # (tasks, rows): 1 = best in that task
    friedman_p: float | None
    notes: list[str] = field(default_factory=list)
    iman_davenport_p: float | None = None
    alpha: float = 0.05
    wilcoxon: dict = field(default_factory=dict)  # row key -> (p, Holm-adjusted p) against the best-ranked row
    worse_in: dict = field(default_factory=dict)  # row key -> number of tasks whose verdict calls it worse

    @property
    def omnibus_rejects(self) -> bool:
        return self.iman_davenport_p is not None and self.iman_davenport_p < self.alpha

    @property
    def mean_ranks(self) -> np.ndarray:
        return self.ranks.mean(axis=0)


@dataclass
class Study:
    """The tables of a set of runs: one when they share a task, else one per task and their ranking."""

    tables: list[Table]
    task_keys: list[str]
    ranking: Ranking | None = None


def task_keys(runs: list[Run], by: list[str] | None) -> list[str]:
    """The data settings that vary between the runs and are not row keys: what makes their tasks differ."""
    done = [r for r in runs if r.finished]
    return [
        k
        for k in varying_keys(done)
        if (k == "data" or k.startswith("data.")) and k not in (by or []) and k not in DATA_TRAINING_SETTINGS
    ]


def build_study(runs: list[Run], by: list[str] | None = None, primary: str | None = None, **table_options) -> Study:
    """One table per task (``build_table`` with ``table_options``), and across tasks the ranking by ``primary``
    (default: the last metric, ``test/f1_macro``)."""
    keys = task_keys(runs, by)
    if not keys:
        return Study([build_table(runs, by=by, **table_options)], [])
    tasks: dict[tuple, list[Run]] = {}
    for r in runs:
        tasks.setdefault(tuple(r.flat.get(k) for k in keys), []).append(r)
    if by is None:  # the same row keys in every task: what varies across all runs, the tasks aside
        by = [k for k in varying_keys([r for r in runs if r.finished]) if k not in keys]
    tables = []
    for key, members in tasks.items():
        table = build_table(members, by=by, **table_options)
        table.task = row_label(keys, key)
        tables.append(table)
    metric = primary or tables[0].metrics[-1]
    return Study(tables, keys, rank(tables, metric))


def rank(tables: list[Table], metric: str) -> Ranking | None:
    """Rows ranked within each task by ``metric``; ``None`` with fewer than 2 tasks or 2 common rows."""
    from scipy.stats import friedmanchisquare, rankdata

    common = [row.key for row in tables[0].rows if all(_find(t, row.key, metric) is not None for t in tables)]
    notes = []
    missing = {row.key for t in tables for row in t.rows} - set(common)
    if missing:
        notes.append(f"not ranked (missing from a task): {', '.join(map(str, sorted(missing, key=str)))}")
    if len(tables) < 2 or len(common) < 2:
        return None
    means = np.array([[_find(t, key, metric) for key in common] for t in tables])  # (tasks, rows)
    ranks = np.array([rankdata(-task_means) for task_means in means])
    p = iman = None
    if len(common) >= 3:  # Friedman compares at least three rows
        chi2 = float(friedmanchisquare(*means.T).statistic)
        p = float(friedmanchisquare(*means.T).pvalue)
        iman = iman_davenport(chi2, len(tables), len(common))
    ranking = Ranking(metric, common, [t.task for t in tables], means, ranks, p, notes, iman)
    _within_tasks(ranking, tables)
    return ranking


def iman_davenport(chi2: float, tasks: int, rows: int) -> float:
    """Iman & Davenport's (1980) F from Friedman's chi-square: F = (N-1) chi2 / (N(k-1) - chi2) on (k-1, (k-1)(N-1))."""
    from scipy.stats import f

    denominator = tasks * (rows - 1) - chi2
    if denominator <= 0:
        return 0.0  # every task ranks the rows alike
    statistic = (tasks - 1) * chi2 / denominator
    return float(f.sf(statistic, rows - 1, (rows - 1) * (tasks - 1)))


def _within_tasks(ranking: Ranking, tables: list[Table]) -> None:
    """Against the best-ranked row: Wilcoxon signed-rank over the tasks (Holm), and the tasks whose verdict (seeds
    and examples) calls the row worse."""
    from scipy.stats import wilcoxon

    from poolbench.analysis.decide import Kind
    from poolbench.analysis.stats import holm

    best = int(np.argmin(ranking.mean_ranks))
    others = [j for j in range(len(ranking.rows)) if j != best]
    ps = []
    for j in others:
        d = ranking.means[:, j] - ranking.means[:, best]
        ps.append(1.0 if np.all(d == 0) else float(wilcoxon(d).pvalue))
    for j, p, adjusted in zip(others, ps, holm(ps), strict=True):
        ranking.wilcoxon[ranking.rows[j]] = (p, adjusted)
    for key in ranking.rows:
        ranking.worse_in[key] = sum(
            1
            for t in tables
            for row in t.rows
            if row.key == key
            and row.verdict.get(ranking.metric) is not None
            and row.verdict[ranking.metric].kind in (Kind.WORSE, Kind.CLEARLY_WORSE)
        )


def _find(table: Table, key: tuple, metric: str) -> float | None:
    row = next((r for r in table.rows if r.key == key), None)
    return row.stats[metric][0] if row is not None and metric in row.stats else None
