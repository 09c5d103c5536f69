"""Ablation tables from runs: rows of settings, mean ± std over seeds, comparisons, and the verdict.

poolbench table multirun/2026-11-25/12-00-00-abc123 [more folders] [--by pooling] [--format latex]

Every row is compared with the reference row (``--ref``, the Δ column: one comparison, no multiplicity) and with the
best row: the verdicts of ``poolbench.analysis.decide`` (all pairs, step-down max-T, equivalence within the
practical ``margin``), or of a sequential design (``poolbench.analysis.sequential``) when the runs came from the
adaptive-seeds sweeper. Rows with one seed stay outside the family: their Δ is over test examples only. Runs on
several tasks (data sets) give one table per task and a ranking across them (``poolbench.analysis.tasks``). Runs
come from ``poolbench.analysis.runs``, comparisons from ``poolbench.analysis.stats``, the rendering from
``poolbench.analysis.report``. Nothing here needs W&B.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np

from poolbench.analysis import decide
from poolbench.analysis.decide import Kind
from poolbench.analysis.runs import Run
from poolbench.analysis.stats import METRIC_FUNCTIONS, Comparison, compare, draw, in_family, one_seed, resample

DEFAULT_METRICS = ("test/acc", "test/f1_macro")
# What `bookkeeping` (conf/train.yaml) said before runs recorded it: settings that never make two runs
# different experiments. Records written since carry their own list.
RECORDED_BEFORE = (
    "seed",
    "paths.",
    "hydra.",
    "callbacks.",
    "logger.",
    "trainer.enable_",
    "data.cache_dir",
    "resume",
    "fail_fast",
    "optimized_metric",
    "encoder.name_or_path",
    "bookkeeping",
)


def bookkeeping(runs: list[Run]) -> tuple[str, ...]:
    """The keys (or key prefixes ending in ``.`` or ``_``) that the runs' configs declare as bookkeeping."""
    declared = {k for r in runs for k in (r.record.config.get("bookkeeping") or RECORDED_BEFORE)}
    return tuple(sorted(declared | {"bookkeeping"}))


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
class Verdict:
    """A row against the best row of its table, for one metric."""

    kind: Kind
    p_adjusted: float | None = None  # step-down max-T over all pairs, against the best
    interval: tuple[float, float] | None = None  # row - best, simultaneous at the level the verdict was made
    floor: float | None = None  # the equivalence floor against the best (metric units)
    at: str | None = None  # a sequential design: the look that decided it ("3 seeds, alpha 0.021")


@dataclass
class Row:
    key: tuple
    runs: list[Run]
    stats: dict = field(default_factory=dict)  # metric -> (mean, std, n)
    comparison: dict = field(default_factory=dict)  # metric -> Comparison | None, against the reference row
    verdict: dict = field(default_factory=dict)  # metric -> Verdict, against the best row
    twin: Row | None = None  # an earlier row with the same predictions at every seed (this one is left out)

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
    ci: str = "seeds"  # what the intervals account for: "seeds" (and examples) or "examples" only
    margin: float = 0.005  # the practical margin, in metric units (0.005 = 0.5 points)
    alpha: float = 0.05
    task: str | None = None  # the task (data set) of this table, when the runs cover several
    design: object | None = None  # a sequential.Design when the verdicts are a sequential design's
    families: dict = field(default_factory=dict)  # metric -> (decide.Family, its rows, sequential.Replay | None)
    precision: dict = field(default_factory=dict)  # metric -> decide.Precision of the verdicts' numbers

    def best(self, metric: str) -> Row | None:
        """The row the verdicts compare with: the best mean among the rows with two seeds or more (else any)."""
        rows = [r for r in self.rows if r.verdict.get(metric) is not None and r.verdict[metric].kind is Kind.BEST]
        if rows:
            return rows[0]
        rows = [r for r in self.rows if metric in r.stats]
        return max(rows, key=lambda r: r.stats[metric][0]) if rows else None

    def floor(self, metric: str) -> tuple[float, float] | None:
        """The smallest and largest equivalence floor of the rows against the best (metric units)."""
        floors = [r.verdict[metric].floor for r in self.rows if r.verdict.get(metric) and r.verdict[metric].floor]
        return (min(floors), max(floors)) if floors else None


def build_table(
    runs: list[Run],
    by: list[str] | None = None,
    metrics: list[str] | tuple[str, ...] = DEFAULT_METRICS,
    ref: str | None = None,
    n_boot: int = 2000,
    best_by: str | None = None,
    ci: str = "seeds",
    margin: float = 0.005,
    alpha: float = 0.05,
    design=None,
) -> Table:
    """Aggregate runs into rows of ``by`` keys; compare every row with the reference and with the best row.

    ``ci``: ``seeds`` (intervals over seeds and test examples) or ``examples`` (test examples only, the trained
    models held fixed). ``margin``: the practical margin of the verdicts. ``best_by`` (e.g. ``val/f1_macro``): a
    row's runs differ in other settings too (a search's trials); keep, per row, only the runs of the setting with
    the best mean of that metric (a validation metric: the test split is not used to choose), and say which.
    ``design``: a ``sequential.Design``: the verdicts of that sequential design, replayed look by look.
    """
    problems = [
        f"{r}: {r.record.status}" + (f" ({r.record.first_error_line()})" if r.record.error else "")
        for r in runs
        if not r.finished
    ]
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
    table = Table(by, list(metrics), rows, _find_ref(rows, by, ref), problems, notes, ci, margin, alpha, design=design)
    resampled = _resampled(rows, metrics, n_boot)
    notes += _twins(rows, by)
    notes += learned_notes(rows, by)
    if resampled is None:
        notes.append("no test predictions for the reference row: no paired comparisons")
        return table
    for m in resampled:
        _verdicts(table, m, resampled[m])
        if table.ref is not None:
            for row in rows:
                if row is not table.ref:
                    row.comparison[m] = _to_ref(table, m, resampled[m], row)
    if ci == "examples":
        for row in rows:
            if table.ref is not None and row is not table.ref and set(row.seeds) != set(table.ref.seeds):
                notes.append(
                    f"{row_label(by, row.key)} has seeds {row.seeds}, the reference {table.ref.seeds}: "
                    "compared on the shared seeds only"
                )
    return table


def _to_ref(table: Table, metric: str, resampled: dict, row: Row) -> Comparison | None:
    """The Δ column: ``row - reference``, alone. In the family: its contrast; a one-seed row: test examples only."""
    a, b = resampled.get(id(table.ref)), resampled.get(id(row))
    if not a or not b:
        return None
    if table.ci == "examples":
        return compare(a, b, "examples")
    family, members, _ = table.families.get(metric, (None, [], None))
    ref, row = table.ref.twin or table.ref, row.twin or row  # identical predictions: the twin's contrast
    if ref in members and row in members:
        return in_family(family, members.index(ref), members.index(row))
    return one_seed(a, b)


def _resampled(rows: list[Row], metrics, n_boot: int) -> dict | None:
    """metric -> id(row) -> seed -> Resampled, every model resampled with the same test examples."""
    with_preds = [(row, r) for row in rows for r in row.runs if r.has_predictions()]
    if not with_preds:
        return None
    first = with_preds[0][1]
    labels, num_classes = first.predictions()[0], len(first.record.label_names)
    if not num_classes:
        return None
    idx = draw(len(labels), n_boot)
    found: dict = {m: {} for m in metrics if m in METRIC_FUNCTIONS}
    for row, run in with_preds:
        run_labels, preds = run.predictions()
        if not np.array_equal(run_labels, labels):
            raise ValueError(
                f"{run}: tested on other examples than {first}; a table compares runs on one test set "
                "(several test sets: one table per task, see --by)"
            )
        for m, per_row in found.items():
            per_row.setdefault(id(row), {})[run.seed] = resample(METRIC_FUNCTIONS[m], labels, preds, idx, num_classes)
    return found


def _twins(rows: list[Row], by: list[str]) -> list[str]:
    """Rows whose runs make the same predictions as an earlier row's, seed for seed, on every test text: one model
    under two names (an attention pooler that stayed at its start is mean pooling). Each gets ``twin``; the verdicts
    leave it out of their family (it would count one model's seed spread twice), and the table says so."""
    seen: dict[tuple, Row] = {}
    notes = []
    for row in rows:
        runs = [r for r in row.runs if r.has_predictions()]
        if not runs or len(runs) != len(row.runs):
            continue
        signature = tuple(sorted((str(r.seed), hashlib.sha1(r.predictions()[1].tobytes()).hexdigest()) for r in runs))
        if signature in seen:
            row.twin = seen[signature]
            notes.append(
                f"{row_label(by, row.key)} makes the same prediction as {row_label(by, row.twin.key)} on every test "
                f"text at each of its {len(runs)} seed(s): one model under two names, left out of the verdicts"
            )
        else:
            seen[signature] = row
    return notes


def learned_notes(rows: list[Row], by: list[str]) -> list[str]:
    """What the rows' learned parts did (``results.json`` ``learned``, ``poolbench.model.learned``): for each row
    with a learned pooler or layer mix, its measure over the seeds, and, where the part stayed at its start, what
    it computed in effect. Records written before the measure existed: said once."""
    notes = []
    measured = [r for row in rows for r in row.runs if r.record.learned]
    if not measured and rows:
        return ["learned parts: not measured in these records (written before 2026-12-08; a rerun measures them)"]
    for row in rows:
        found = [r.record.learned for r in row.runs if r.record.learned]
        for part in ("layers", "pooling"):
            entries = [f[part] for f in found if part in f]
            if entries:
                notes.append(f"{row_label(by, row.key)}: {_part_line(part, entries)}")
    return notes


def _part_line(part: str, entries: list[dict]) -> str:
    def span(values: list[float], fmt: str) -> str:
        low, high = min(values), max(values)
        return format(low, fmt) if format(low, fmt) == format(high, fmt) else f"{format(low, fmt)}-{format(high, fmt)}"

    first, seeds = entries[0], len(entries)
    words = [f"{part} ({first['start']}"]
    rates = sorted({e["lr"] for e in entries if e.get("lr") is not None})
    words[0] += f", lr {', '.join(f'{r:g}' for r in rates)})" if rates else ")"
    moved = [e["moved"] for e in entries if e.get("moved") is not None]
    if moved:
        words.append(f"moved {span(moved, '.3g')}" + (" from zero" if first.get("from_zero") else " of its start"))
    for key, unit in (("token_weights", "tokens"), ("layer_weights", "layers")):
        weights = [e[key][f"top_x_{unit}"] for e in entries if e.get(key)]
        if weights:
            where = " on the test set" if unit == "tokens" else ""
            words.append(f"top {unit[:-1]} weight x {unit}{where} {span(weights, '.3f')} (1 = uniform)")
    stayed = [e for e in entries if e.get("stayed")]
    line = ", ".join(words)
    if stayed:
        effect = stayed[0]["note"].split(": it computed ")[-1]
        line += f"; stayed at its start in {len(stayed)} of {seeds} seed(s): it computed {effect}"
    return line


def _verdicts(table: Table, metric: str, resampled: dict) -> None:
    """Each row against the best row by ``metric`` (``decide``; or the sequential design's replay)."""
    rows = [row for row in table.rows if metric in row.stats and resampled.get(id(row))]
    for row in rows:
        if row.twin is not None:
            row.verdict[metric] = Verdict(Kind.IDENTICAL)
    rows = [row for row in rows if row.twin is None]
    members = [row for row in rows if len(resampled[id(row)]) >= 2]
    for row in rows:
        if row not in members:
            row.verdict[metric] = Verdict(Kind.ONE_SEED)
    if len(members) < 2:
        for row in members:
            row.verdict[metric] = Verdict(Kind.NA)
        return
    _spread_note(table, metric, members, resampled)
    if table.design is not None:
        from poolbench.analysis import sequential

        replay = sequential.replay([resampled[id(row)] for row in members], table.design)
        table.families[metric] = (replay.family, members, replay)
        table.precision[metric] = replay.precision
        for row, state in zip(members, replay.states, strict=True):
            d = state.decision
            row.verdict[metric] = Verdict(d.kind, d.p_adjusted, d.interval, d.floor, state.at)
        return
    family = decide.family_from([row.key for row in members], [resampled[id(row)] for row in members])
    table.families[metric] = (family, members, None)
    found = decide.decide(family, table.alpha, table.margin)
    table.precision[metric] = found.precision
    for row, d in zip(members, found.rows, strict=True):
        row.verdict[metric] = Verdict(d.kind, d.p_adjusted, d.interval, d.floor)


def _spread_note(table: Table, metric: str, members: list[Row], resampled: dict) -> None:
    """The seed spread is pooled over the rows: say so when the rows' spreads differ (Levene 1960, scipy)."""
    from scipy.stats import levene

    values = [[r.observed for r in resampled[id(row)].values()] for row in members]
    if any(np.ptp(v) > 0 for v in values):
        p = float(levene(*values, center="mean").pvalue)
        if p < 0.05:
            table.notes.append(
                f"{metric}: the seed spread differs between rows (Levene p = {p:.3g}); the "
                "verdicts pool it over the rows, which understates the spread of the most scattered "
                "rows and overstates the others'"
            )


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
        notes.append(
            f"{row_label(by, row.key)}: best of {len(candidates)} settings by {metric} "
            f"({score(row.runs):.4f}): {chosen}"
        )
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


def row_label(by: list[str], key: tuple) -> str:
    return ",".join(f"{k}={v}" for k, v in zip(by, key, strict=True)) or "all runs"


__all__ = ["Comparison", "Row", "Table", "Verdict", "build_table", "row_label", "varying_keys"]
