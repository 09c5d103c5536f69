"""Adaptive seeds: run a grid until the question is answered, not for a fixed number of seeds.

``hydra/sweeper=adaptive_seeds`` (``conf/hydra/sweeper/adaptive_seeds.yaml``; the Hydra plugin is in
``hydra_plugins/poolbench_adaptive_seeds``) runs every row of the user's grid with ``min_seeds`` seeds. After
each round it builds the sweep's table (``poolbench.analysis``: intervals over seeds and test examples, verdicts
against the best row, Holm-adjusted, with the practical ``margin``) and launches one more seed only for the rows
whose verdict is still open: neither within the margin of the best (``tied (±m)``) nor worse by more than it.
The best row of a task gets the same seed whenever a row of its task does, so that comparisons stay paired by
seed. It stops when every row is decided or has ``max_seeds`` seeds.

Jobs go through the configured launcher (basic, joblib, submitit), one batch per round, each job an ordinary
job (folder, record, W&B run). Decisions depend only on the finished records, so re-running the command with
``resume=true`` replays the same rounds: finished jobs are skipped by the job itself, interrupted ones resume,
and the search goes on from where it stopped. ``decisions.jsonl`` in the sweep folder says, round by round, what
was known and what was launched and why; the sweep ends with the table and its verdicts.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from poolbench.analysis import report
from poolbench.analysis.runs import find_runs
from poolbench.analysis.table import row_label
from poolbench.analysis.tasks import Study, build_study
from poolbench.record import atomic_write_text

log = logging.getLogger(__name__)

OPEN = ("tied", "worse", "better", "n/a")  # verdicts more seeds could still change


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


@dataclass
class Point:
    """One row of the user's grid (its overrides) and the jobs run for it so far."""

    overrides: list[str]
    name: str  # its swept overrides, e.g. "pooling=cls data.domains=tweets"
    folders: dict[int, Path] = field(default_factory=dict)  # seed -> job folder
    state: str = "open"  # open | decided | max_seeds | failed

    @property
    def seeds(self) -> int:
        return len(self.folders)


@dataclass
class AdaptiveSeeds:
    min_seeds: int = 3
    max_seeds: int = 10
    margin: float = 0.5  # points
    metric: str = "test/f1_macro"
    alpha: float = 0.05
    bootstrap: int = 1000

    def __post_init__(self) -> None:
        if not 1 <= self.min_seeds <= self.max_seeds:
            raise ValueError(f"hydra.sweeper: need 1 <= min_seeds <= max_seeds, got {self.min_seeds}, {self.max_seeds}")

    def run(
        self, grid: list[list[str]], swept: list[str], launch, sweep_dir: Path, log_wandb: bool = False
    ) -> Study | None:
        """Run the grid, whose ``swept`` keys vary; ``launch(overrides_list, first_job_number)`` runs a batch of jobs.
        Swept data settings are tasks (a table each, ranked across them); the other swept keys are the rows. With
        ``log_wandb``, the final table and the decisions go to a summary run in the sweep's W&B group. Returns the
        final ``Study``."""
        if any(_key(o) == "seed" for point in grid for o in point):
            raise ValueError("hydra/sweeper=adaptive_seeds chooses the seeds: remove seed=... from the command")
        points = [Point(list(p), " ".join(o for o in p if _key(o) in swept)) for p in grid]
        row_keys = [k for k in swept if not (k == "data" or k.startswith("data."))] or swept
        decisions = sweep_dir / "decisions.jsonl"
        lines: list[str] = []
        batch = [(p, seed) for p in points for seed in range(1, self.min_seeds + 1)]
        number, study, rounds = 0, None, 0
        while batch:
            rounds += 1
            launch([[*p.overrides, f"seed={seed}"] for p, seed in batch], number)
            for p, seed in batch:
                p.folders[seed] = sweep_dir / str(number)
                number += 1
            study, entry = self.decide(points, row_keys, rounds)
            batch = [(p, p.seeds + 1) for p in points if p.state == "open"]
            entry["launched_next"] = [{"row": p.name, "seed": s} for p, s in batch]
            lines.append(json.dumps(entry))
            atomic_write_text(decisions, "\n".join(lines) + "\n")  # rewritten whole: a resumed sweep replays it
        if study is not None:
            summary = {"final": True, "rounds": rounds, "jobs": number, "fixed_grid_jobs": len(points) * self.max_seeds}
            atomic_write_text(decisions, "\n".join([*lines, json.dumps(summary)]) + "\n")
            written = report.write_outputs(study, sweep_dir)
            print(report.render_study(study, "markdown"))
            if log_wandb:  # the table, the verdicts and every round's decisions, next to the jobs' runs
                columns = ["round", "row", "task", "seeds", "mean", "verdict", "next"]
                rows = [[r["round"], *(row.get(c) for c in columns[1:])] for line in lines
                        for r in [json.loads(line)] for row in r["rows"]]  # fmt: skip
                report.log_to_wandb(study, written, tables={"decisions": (columns, rows)})
            print(f"adaptive seeds: {number} jobs in {rounds} rounds; a fixed {self.max_seeds}-seed grid: "
                  f"{len(points) * self.max_seeds} jobs. Decisions: {decisions}")  # fmt: skip
        return study

    def decide(self, points: list[Point], row_keys: list[str], round_number: int) -> tuple[Study | None, dict]:
        """Verdicts from the finished jobs; each point's state for the next round, and the round's record."""
        folders = [f for p in points for f in p.folders.values() if (f / "results.json").is_file()]
        runs = find_runs(folders) if folders else []
        failed = {r.folder for r in runs if not r.finished}
        study = None
        if any(r.finished for r in runs):
            study = build_study(runs, by=row_keys, primary=self.metric, metrics=[self.metric], n_boot=self.bootstrap,
                                margin=self.margin / 100, alpha=self.alpha)  # fmt: skip
        where = {r.folder: (t, row) for t in (study.tables if study else []) for row in t.rows for r in row.runs}
        rows = []
        for p in points:
            table, row = next((where[f] for f in p.folders.values() if f in where), (None, None))
            verdict = row.verdict.get(self.metric) if row is not None else None
            kind = verdict.kind if verdict is not None else "n/a"
            if any(f in failed or not (f / "results.json").is_file() for f in p.folders.values()):
                p.state = "failed"  # a job that did not finish: more seeds would not answer anything
            elif kind in OPEN:
                p.state = "open"
            elif kind == "best":
                p.state = "open" if self._task_open(points, table, where) else "decided"
            else:
                p.state = "decided"
            if p.state == "open" and p.seeds >= self.max_seeds:
                p.state = "max_seeds"
            rows.append(self._row_entry(p, table, row, verdict, kind))
        return study, {"round": round_number, "rows": rows}

    def _task_open(self, points: list[Point], table, where: dict) -> bool:
        """Whether another row of ``table`` (the best row's task) is still open: the best row then gets its seed."""
        for q in points:
            found = next((where[f] for f in q.folders.values() if f in where), (None, None))
            verdict = found[1].verdict.get(self.metric) if found[0] is table and found[1] is not None else None
            if verdict is not None and verdict.kind in OPEN:
                return True
        return False

    def _row_entry(self, p: Point, table, row, verdict, kind: str) -> dict:
        mean = row.stats.get(self.metric, (None,))[0] if row is not None else None
        entry = {"row": p.name, "task": table.task if table is not None else None,
                 "label": row_label(table.by, row.key) if row is not None else None, "seeds": p.seeds,
                 "mean": mean, "verdict": kind, "next": p.state}  # fmt: skip
        if verdict is not None and verdict.interval is not None:
            entry.update(p_holm=verdict.p_holm, interval_to_best=list(verdict.interval))
        entry["why"] = {
            "open": "the verdict is open: one more seed",
            "decided": "decided: within the margin of the best, worse by more than it, or the best of a decided task",
            "max_seeds": f"open, but {self.max_seeds} seeds (max_seeds) reached",
            "failed": "a job of this row did not finish: no more seeds",
        }[p.state]
        return entry
