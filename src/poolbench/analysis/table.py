"""Ablation tables from runs: rows of settings, mean ± std over seeds, comparisons with a reference row.

    poolbench table multirun/2026-11-25/12-00-00-abc123 [more folders] [--by pooling] [--format latex]

Runs come from folders or W&B (``poolbench.analysis.runs``), comparisons from ``poolbench.analysis.stats``,
and the rendering from ``poolbench.analysis.report``. Nothing here needs W&B: a table rebuilds anywhere the
records are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from poolbench.analysis.runs import Run
from poolbench.analysis.stats import paired_bootstrap

DEFAULT_METRICS = ("test/acc", "test/f1_macro")
# What `bookkeeping` (conf/train.yaml) said before runs recorded it: settings that never make two runs
# different experiments. Records written since carry their own list.
RECORDED_BEFORE = ("seed", "paths.", "hydra.", "callbacks.", "logger.", "trainer.enable_", "data.cache_dir", "resume",
                   "fail_fast", "optimized_metric", "encoder.name_or_path")  # fmt: skip


def bookkeeping(runs: list[Run]) -> tuple[str, ...]:
    """The keys (or key prefixes ending in ``.`` or ``_``) that the runs' configs declare as bookkeeping."""
    declared = {k for r in runs for k in (r.record.config.get("bookkeeping") or RECORDED_BEFORE)}
    return tuple(sorted(declared))


def _ignored(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p if p.endswith((".", "_")) else p + ".") for p in prefixes)


def varying_keys(runs: list[Run]) -> list[str]:
    """Keys whose value differs between runs, seed and bookkeeping aside; group choices first."""
    keys = sorted({k for r in runs for k in r.flat})
    ignored = bookkeeping(runs)

    def varies(k: str) -> bool:
        return len({json.dumps(r.flat.get(k), default=str) for r in runs}) > 1

    # a group's `_target_` and `_partial_` follow its choice (`pooling`, ...), which is already a column
    varying = [k for k in keys if not _ignored(k, ignored) and not k.endswith(("_target_", "_partial_")) and varies(k)]
    choices = [k for k in varying if "." not in k]
    covered = {f"{c}." for c in choices}
    return choices + [k for k in varying if "." in k and not k.startswith(tuple(covered))]


@dataclass
class Row:
    key: tuple
    runs: list[Run]
    stats: dict = field(default_factory=dict)  # metric -> (mean, std, n)
    comparison: dict = field(default_factory=dict)  # metric -> Comparison | None

    @property
    def seeds(self) -> list:
        return sorted({r.seed for r in self.runs}, key=str)


@dataclass
class Table:
    by: list[str]
    metrics: list[str]
    rows: list[Row]
    ref: Row | None
    problems: list[str]  # incomplete or failed runs, listed, never dropped silently
    notes: list[str]

    def best(self, metric: str) -> Row | None:
        rows = [r for r in self.rows if metric in r.stats]
        return max(rows, key=lambda r: r.stats[metric][0]) if rows else None


def build_table(
    runs: list[Run],
    by: list[str] | None = None,
    metrics: list[str] | tuple[str, ...] = DEFAULT_METRICS,
    ref: str | None = None,
    n_boot: int = 2000,
    best_by: str | None = None,
) -> Table:
    """Aggregate runs into rows of ``by`` keys; compare every row with the reference row.

    ``best_by`` (e.g. ``val/f1_macro``): a row's runs differ in other settings too (a search's trials); keep, per
    row, only the runs of the setting with the best mean of that metric (a validation metric: the test split is
    not used to choose), and say which setting it was.
    """
    problems = [f"{r}: {r.record.status}" + (f" ({r.record.first_error_line()})" if r.record.error else "")
                for r in runs if not r.finished]  # fmt: skip
    done = [r for r in runs if r.finished]
    if not done:
        raise ValueError("no finished runs to tabulate:\n  " + "\n  ".join(problems))
    by = list(by) if by else varying_keys(done)
    groups: dict[tuple, list[Run]] = {}
    for r in done:
        groups.setdefault(tuple(r.flat.get(k) for k in by), []).append(r)
    rows = [Row(key, members) for key, members in groups.items()]
    notes = []
    others = [k for k in varying_keys(done) if k not in by and not k.startswith(tuple(f"{b}." for b in by))]
    if best_by:
        notes += _keep_best(rows, by, others, best_by)
    else:  # runs that differ in more than the row keys: say so, a row may mix them
        notes += _unlisted_differences(rows, by, others)
    for row in rows:
        for m in metrics:
            values = [r.metrics[m] for r in row.runs if m in r.metrics]
            if values:
                std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
                row.stats[m] = (float(np.mean(values)), std, len(values))
    ref_row = _find_ref(rows, by, ref)
    if ref_row is not None:
        ref_preds = _predictions(ref_row)
        num_classes = len(ref_row.runs[0].record.label_names)
        if not ref_preds or not num_classes:
            notes.append("no test predictions for the reference row: no paired comparisons")
        for row in rows:
            if row is ref_row:
                continue
            preds = _predictions(row)
            for m in metrics:
                row.comparison[m] = paired_bootstrap(ref_preds, preds, m, num_classes, n_boot)
            if set(row.seeds) != set(ref_row.seeds):
                notes.append(
                    f"{row_label(by, row.key)} has seeds {row.seeds}, the reference {ref_row.seeds}: "
                    "compared on the shared seeds only"
                )
    return Table(by, list(metrics), rows, ref_row, problems, notes)


def _keep_best(rows: list[Row], by: list[str], settings: list[str], metric: str) -> list[str]:
    """Within each row keep the runs of the best setting (by mean ``metric``); return one note per row."""
    notes = []
    for row in rows:
        candidates: dict[tuple, list[Run]] = {}
        for r in row.runs:
            candidates.setdefault(tuple(r.flat.get(k) for k in settings), []).append(r)

        def score(members: list[Run]) -> float:
            values = [r.metrics[metric] for r in members if metric in r.metrics]
            return float(np.mean(values)) if values else -np.inf

        best = max(candidates, key=lambda c: score(candidates[c]))
        if score(candidates[best]) == -np.inf:
            raise ValueError(f"--best-by {metric}: no run of {row_label(by, row.key)} has that metric")
        row.runs = candidates[best]
        chosen = ", ".join(f"{k}={_short(v)}" for k, v in zip(settings, best, strict=True)) or "(one setting)"
        notes.append(f"{row_label(by, row.key)}: best of {len(candidates)} settings by {metric} "
                     f"({score(row.runs):.4f}): {chosen}")  # fmt: skip
    return notes


def _unlisted_differences(rows: list[Row], by: list[str], keys: list[str]) -> list[str]:
    """One note per setting that varies between runs but is not a row key (e.g. the precision the hardware chose),
    naming the rows whose runs mix its values, with their seeds."""
    notes = []
    for k in keys:
        counts: dict[str, int] = {}
        mixed = []
        for row in rows:
            seeds: dict[str, list] = {}
            for r in row.runs:
                seeds.setdefault(_short(r.flat.get(k)), []).append(r.seed)
            for value, s in seeds.items():
                counts[value] = counts.get(value, 0) + len(s)
            if len(seeds) > 1:
                parts = "; ".join(f"{v} (seeds {', '.join(map(str, sorted(s, key=str)))})" for v, s in seeds.items())
                mixed.append(f"{row_label(by, row.key)}: {parts}")
        spread = ", ".join(f"{v} in {n} runs" for v, n in counts.items())
        note = f"{k} differs between runs and is not a row key ({spread})"
        notes.append(note + ("; rows that mix it: " + " | ".join(mixed) if mixed else ""))
    return notes


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _find_ref(rows: list[Row], by: list[str], ref: str | None) -> Row | None:
    if not rows:
        return None
    if ref is None:
        return rows[0]
    wanted = dict(part.split("=", 1) for part in ref.split(","))
    for row in rows:
        values = dict(zip(by, row.key, strict=True))
        if all(str(values.get(k)) == v for k, v in wanted.items()):
            return row
    raise ValueError(f"--ref {ref}: no row matches; rows are {[row_label(by, r.key) for r in rows]}")


def _predictions(row: Row) -> dict:
    return {r.seed: r.predictions() for r in row.runs if r.has_predictions()}


def row_label(by: list[str], key: tuple) -> str:
    return ",".join(f"{k}={v}" for k, v in zip(by, key, strict=True)) or "all runs"
