"""Ablation tables from run folders: mean ± std over seeds, paired-bootstrap comparisons, plots.

    poolbench table multirun/2026-11-25/12-00-00-abc123 [more folders] [--by pooling] [--format latex]

Every job folder holds ``results.json`` and ``test_predictions.jsonl`` (see ``poolbench.train``); nothing here
needs W&B, so a table can be rebuilt anywhere the folders are.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DEFAULT_METRICS = ("test/acc", "test/f1_macro")
# config keys that never make two runs different experiments
IGNORED = ("seed", "paths.", "hydra.", "callbacks.", "logger.", "trainer.enable_", "data.cache_dir", "resume",
           "fail_fast", "optimized_metric", "encoder.name_or_path")  # fmt: skip


@dataclass
class Run:
    folder: Path
    results: dict
    flat: dict = field(default_factory=dict)
    source: str | None = None  # where it came from when not a local folder, e.g. wandb:ENTITY/PROJECT/ID

    def __str__(self) -> str:
        return self.source or str(self.folder)

    @property
    def finished(self) -> bool:
        return self.results.get("status") == "finished"

    @property
    def seed(self):
        return self.results.get("config", {}).get("seed")

    def predictions(self) -> tuple[np.ndarray, np.ndarray]:
        """(labels, predictions) of the test split, in example order."""
        rows = [json.loads(line) for line in (self.folder / "test_predictions.jsonl").read_text().splitlines()]
        rows.sort(key=lambda r: r["idx"])
        return np.array([r["label"] for r in rows]), np.array([r["pred"] for r in rows])


def flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        elif not isinstance(value, list):
            out[name] = value
    return out


def find_runs(paths: list[str | Path]) -> list[Run]:
    """Every job under ``paths`` (folders searched recursively), finished or not."""
    runs = []
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no such run folder: {path}")
        if path.is_dir():  # skipping the copies each W&B run folder holds
            files = sorted((f for f in path.rglob("results.json") if "wandb" not in f.relative_to(path).parts),
                           key=_natural)  # fmt: skip
        else:
            files = [path]
        runs += [make_run(file.parent, json.loads(file.read_text())) for file in files]
    if not runs:
        raise FileNotFoundError(f"no results.json under {', '.join(map(str, paths))}")
    return runs


# group choices added after runs were recorded, and what those runs did: a record from before `layers`
# existed pooled the last layer, so it sits in the same row as `layers=last`
ADDED_CHOICES = {"layers": "last"}


def make_run(folder: Path, results: dict, source: str | None = None) -> Run:
    flat = flatten(results.get("config", {}))
    own = results.get("output_dir")  # settings that point into the run's own folder differ by nature
    flat = {k: v for k, v in flat.items() if not (own and isinstance(v, str) and own in v)}
    choices = {k: v for k, v in (results.get("choices") or {}).items() if v is not None}
    if choices:  # a poolbench record
        choices = ADDED_CHOICES | choices
    flat.update(choices)  # `pooling`, `encoder`, `data`: the names users sweep
    return Run(folder, results, flat, source)


RECORD_FILES = ("results.json", "test_predictions.jsonl")
WANDB_STATES = {"finished": "finished", "failed": "failed", "crashed": "failed", "killed": "failed"}


def find_wandb_runs(path: str, group: str | None = None, cache: Path | None = None, api=None) -> list[Run]:
    """The runs of a W&B project (``ENTITY/PROJECT``), or of one sweep's ``group``, read with ``wandb.Api``.

    Every poolbench job attaches its ``results.json`` and its test predictions without texts to its W&B run
    (``poolbench/...`` files); they are downloaded into ``cache/<run id>/`` and read like a local folder, so
    the table and its bootstrap comparisons are the same as from the folders. Runs without those files (logged
    by other code) are read from their W&B config and summary: their means and stds, no comparisons.
    """
    if api is None:
        import wandb

        api = wandb.Api()
    if cache is None:
        cache = Path(os.environ.get("POOLBENCH_CACHE", "~/.cache/poolbench")).expanduser() / "wandb" / path
    runs = []
    for wrun in api.runs(path, filters={"group": group} if group else None):
        folder = Path(cache) / wrun.id / "poolbench"
        files = {f.name: f for f in wrun.files()}
        for name in RECORD_FILES:
            if f"poolbench/{name}" in files:
                files[f"poolbench/{name}"].download(root=str(folder.parent), replace=True)
        source = f"wandb:{path}/{wrun.id} ({wrun.name})"
        if (folder / "results.json").is_file():
            results = json.loads((folder / "results.json").read_text())
        else:
            results = _results_from_wandb(wrun)
        runs.append(make_run(folder, results, source))
    if not runs:
        raise FileNotFoundError(f"no W&B runs in {path}" + (f" with group {group!r}" if group else ""))
    return runs


def _results_from_wandb(wrun) -> dict:
    """A record from a run's W&B config (``<group>.name`` gives the choice) and numeric test/val summary."""
    config, choices = {}, {}
    for key, value in dict(wrun.config).items():
        if isinstance(value, dict) and "name" in value:
            choices[key] = value["name"]
            value = {k: v for k, v in value.items() if k != "name"}
        config[key] = value
    numeric = {k: v for k, v in dict(wrun.summary).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    metrics = {k: float(v) for k, v in numeric.items() if k.startswith(("test/", "val/"))}
    return {"status": WANDB_STATES.get(wrun.state, wrun.state), "choices": choices, "config": config,
            "metrics": metrics, "group": getattr(wrun, "group", None)}  # fmt: skip


def _natural(path: Path) -> list:
    """Sort key that puts job folder 2 before 10 (Hydra numbers a sweep's jobs 0, 1, 2, ...)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def varying_keys(runs: list[Run]) -> list[str]:
    """Keys whose value differs between runs, seed and bookkeeping aside; group choices first."""
    keys = sorted({k for r in runs for k in r.flat})

    def varies(k: str) -> bool:
        return len({json.dumps(r.flat.get(k), default=str) for r in runs}) > 1

    # a group's `_target_` and `_partial_` follow its choice (`pooling`, ...), which is already a column
    varying = [k for k in keys if not k.startswith(IGNORED) and not k.endswith(("_target_", "_partial_")) and varies(k)]
    choices = [k for k in varying if "." not in k]
    covered = {f"{c}." for c in choices}
    return choices + [k for k in varying if "." in k and not k.startswith(tuple(covered))]


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
    problems = [
        f"{r}: {r.results.get('status', '?')}"
        + (f" ({r.results['error'].splitlines()[0]})" if r.results.get("error") else "")
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
            values = [r.results["metrics"][m] for r in row.runs if m in r.results.get("metrics", {})]
            if values:
                std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
                row.stats[m] = (float(np.mean(values)), std, len(values))
    ref_row = _find_ref(rows, by, ref)
    if ref_row is not None:
        ref_preds = _predictions(ref_row)
        num_classes = len((ref_row.runs[0].results.get("confusion_matrix") or {}).get("labels") or [])
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
            values = [r.results["metrics"][metric] for r in members if metric in r.results.get("metrics", {})]
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
    return {r.seed: r.predictions() for r in row.runs if (r.folder / "test_predictions.jsonl").exists()}


def row_label(by: list[str], key: tuple) -> str:
    return ",".join(f"{k}={v}" for k, v in zip(by, key, strict=True)) or "all runs"


if __name__ == "__main__":  # python -m poolbench.table PATH ...
    import sys

    from poolbench.cli import table_command

    sys.exit(table_command())
