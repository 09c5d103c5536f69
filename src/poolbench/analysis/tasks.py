"""Runs on several tasks (data sets, or domains of one): a table per task, and a ranking across them.

A task is what the runs were tested on: the ``data`` choice and the data settings that vary between runs (a
file, a hub name, ``data.domains``, ...), but not the training settings of the data module (batch size, ...).
Across tasks each row gets its rank per task by the primary metric's mean (1 = best, ties shared), the mean
rank, a Friedman test of "all rows rank alike" (scipy) and a critical-difference diagram (scikit-posthocs,
Nemenyi's post-hoc test), as in Demšar (2006), "Statistical comparisons of classifiers over multiple data sets".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from poolbench.analysis.runs import Run
from poolbench.analysis.table import Table, build_table, row_label, varying_keys

# settings of the data module that change how a model is trained, not what it is tested on
DATA_TRAINING_SETTINGS = ("data.batch_size", "data.eval_batch_size", "data.num_workers", "data.group_by_length",
                          "data.max_length")  # fmt: skip


@dataclass
class Ranking:
    metric: str
    rows: list[tuple]  # the rows present in every task
    tasks: list[str]
    means: np.ndarray  # (tasks, rows): the metric's mean over seeds
    ranks: np.ndarray  # (tasks, rows): 1 = best in that task
    friedman_p: float | None
    notes: list[str] = field(default_factory=list)

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
    return [k for k in varying_keys(done) if (k == "data" or k.startswith("data.")) and k not in (by or [])
            and k not in DATA_TRAINING_SETTINGS]  # fmt: skip


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
    p = None
    if len(common) >= 3:  # Friedman compares at least three rows
        p = float(friedmanchisquare(*means.T).pvalue)
    return Ranking(metric, common, [t.task for t in tables], means, ranks, p, notes)


def _find(table: Table, key: tuple, metric: str) -> float | None:
    row = next((r for r in table.rows if r.key == key), None)
    return row.stats[metric][0] if row is not None and metric in row.stats else None
