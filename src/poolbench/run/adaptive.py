"""Adaptive seeds: run a grid until the question is answered, not for a fixed number of seeds.

``hydra/sweeper=adaptive_seeds`` (``conf/hydra/sweeper/adaptive_seeds.yaml``; the Hydra plugin is in
``hydra_plugins/poolbench_adaptive_seeds``) runs every row of the user's grid with ``min_seeds`` seeds. After each
round it builds the sweep's table with the verdicts of a sequential design (``poolbench.analysis.sequential``:
alpha spent over the looks, claims final, a futility rule) and launches one more seed only for the rows that are
still open: no claim yet (worse, worse by more than the margin, tied within it) and more seeds can still make one.
The best row of a task gets a seed whenever another row of its task does. It stops when no row is open.

Jobs go through the configured launcher (basic, joblib, submitit), one batch per round, each job an ordinary
job (folder, record, W&B run). Decisions depend only on the finished records, so re-running the command with
``resume=true`` replays the same rounds: finished jobs are skipped by the job itself, interrupted ones resume,
and the search goes on from where it stopped. ``decisions.jsonl`` in the sweep folder holds the design (first
line), then round by round each row's seeds, mean, verdict, the look's alpha and boundary, its conditional power,
what was launched next and why; the last line counts the jobs against a fixed ``max_seeds`` grid. ``poolbench table``
on the sweep folder reads the design from it and gives the same verdicts.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from poolbench.analysis import decide, report
from poolbench.analysis.runs import find_runs
from poolbench.analysis.sequential import Design
from poolbench.analysis.table import row_label
from poolbench.analysis.tasks import Study, build_study
from poolbench.record import atomic_write_text

log = logging.getLogger(__name__)


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
    spending: str = "pocock"
    futility: float = 0.1

    def __post_init__(self) -> None:
        try:
            self.design = Design(
                self.min_seeds, self.max_seeds, self.alpha, decide.fraction(self.margin), self.spending, self.futility
            )
        except ValueError as err:
            raise ValueError(f"hydra.sweeper: {err}") from err

    def run(
        self,
        grid: list[list[str]],
        swept: list[str],
        launch,
        sweep_dir: Path,
        log_wandb: bool = False,
        outputs: bool = True,
    ) -> Study | None:
        """Run the grid, whose ``swept`` keys vary; ``launch(overrides_list, first_job_number)`` runs a batch of jobs.
        Swept data settings are tasks (a table each, ranked across them); the other swept keys are the rows. With
        ``log_wandb``, the final table and the decisions go to a summary run in the sweep's W&B group; without
        ``outputs`` (simulations), no table or plots are written. Returns the final ``Study``."""
        if any(_key(o) == "seed" for point in grid for o in point):
            raise ValueError("hydra/sweeper=adaptive_seeds chooses the seeds: remove seed=... from the command")
        points = [Point(list(p), " ".join(o for o in p if _key(o) in swept)) for p in grid]
        row_keys = [k for k in swept if not (k == "data" or k.startswith("data."))] or swept
        decisions = sweep_dir / "decisions.jsonl"
        lines: list[str] = [json.dumps({"design": self.design.to_dict(), "metric": self.metric})]
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
            if not outputs:
                return study
            written = report.write_outputs(study, sweep_dir)
            print(report.render_study(study, "markdown"))
            if log_wandb:  # the table, the verdicts and every round's decisions, next to the jobs' runs
                columns = ["round", "row", "task", "seeds", "mean", "verdict", "next"]
                rows = [
                    [r["round"], *(row.get(c) for c in columns[1:])]
                    for line in lines[1:]
                    for r in [json.loads(line)]
                    for row in r["rows"]
                ]
                report.log_to_wandb(study, written, tables={"decisions": (columns, rows)})
            print(
                f"adaptive seeds: {number} jobs in {rounds} rounds; a fixed {self.max_seeds}-seed grid: "
                f"{len(points) * self.max_seeds} jobs. Decisions: {decisions}"
            )
        return study

    def decide(self, points: list[Point], row_keys: list[str], round_number: int) -> tuple[Study | None, dict]:
        """The design's verdicts from the finished jobs; each point's state for the next round, and the round's
        record."""
        folders = [f for p in points for f in p.folders.values() if (f / "results.json").is_file()]
        runs = find_runs(folders) if folders else []
        failed = {r.folder for r in runs if not r.finished}
        study = None
        if any(r.finished for r in runs):
            study = build_study(
                runs,
                by=row_keys,
                primary=self.metric,
                metrics=[self.metric],
                n_boot=self.bootstrap,
                margin=self.design.margin,
                alpha=self.alpha,
                design=self.design,
            )
        where = {r.folder: (t, row) for t in (study.tables if study else []) for row in t.rows for r in row.runs}
        found = [next((where[f] for f in p.folders.values() if f in where), (None, None)) for p in points]
        states = [self._state(table, row) for table, row in found]
        open_tasks = {id(t) for (t, _), s in zip(found, states, strict=True) if s is not None and s.state == "open"}
        entries = []
        for p, (table, row), state in zip(points, found, states, strict=True):
            if any(f in failed or not (f / "results.json").is_file() for f in p.folders.values()):
                p.state = "failed"  # a job that did not finish: more seeds would not answer anything
            elif state is None and table is not None and len(table.rows) < 2:
                p.state = "decided"  # alone in its task: nothing to compare it with, more seeds cannot help
            elif state is None:
                p.state = "open" if p.seeds < self.max_seeds else "max_seeds"
            elif state.state == "best":
                done = "max_seeds" if p.seeds >= self.max_seeds else "decided"
                p.state = "open" if id(table) in open_tasks and p.seeds < self.max_seeds else done
            else:
                p.state = {"decided": "decided", "futile": "futile", "max_seeds": "max_seeds"}.get(state.state, "open")
            entries.append(self._row_entry(p, table, row, state))
        return study, {"round": round_number, **self._look(study), "rows": entries}

    def _state(self, table, row):
        """The sequential design's state of ``row`` (``None``: no verdict, e.g. no predictions yet)."""
        if table is None or self.metric not in table.families:
            return None
        family, members, replay = table.families[self.metric]
        row = row.twin or row  # identical predictions: the same model, the same state
        return replay.states[members.index(row)] if replay is not None and row in members else None

    def _look(self, study: Study | None) -> dict:
        """The current look's seeds, alpha spent and critical value (per task)."""
        looks = {}
        for table in study.tables if study else []:
            entry = table.families.get(self.metric)
            if entry and entry[2] is not None and entry[2].looks:
                look = entry[2].looks[-1]
                looks[table.task or "all"] = {"seeds": look.seeds, "alpha_spent": look.alpha, "critical": look.critical}
        return {"looks": looks}

    def _row_entry(self, p: Point, table, row, state) -> dict:
        mean = row.stats.get(self.metric, (None,))[0] if row is not None else None
        verdict = row.verdict.get(self.metric) if row is not None else None
        entry = {
            "row": p.name,
            "task": table.task if table is not None else None,
            "label": row_label(table.by, row.key) if row is not None else None,
            "seeds": p.seeds,
            "mean": mean,
            "verdict": verdict.kind.value if verdict else "n/a",
            "next": p.state,
        }
        if verdict is not None and verdict.interval is not None:
            entry.update(p_adjusted=verdict.p_adjusted, interval_to_best=list(verdict.interval), decided_at=verdict.at)
        if state is not None and state.boundary is not None:
            entry["boundary_points"] = decide.points(state.boundary)  # this far below the best: called worse
        if state is not None and state.power is not None:
            entry["conditional_power"] = state.power
        entry["why"] = {
            "failed": "a job of this row did not finish: no more seeds",
            "max_seeds": f"open, but {self.max_seeds} seeds (max_seeds) reached",
        }.get(p.state)
        if entry["why"] is None and state is not None:
            entry["why"] = state.why
        elif entry["why"] is None:
            alone = p.state == "decided"
            entry["why"] = "alone in its task: nothing to compare it with" if alone else "no verdict yet: one more seed"
        return entry
