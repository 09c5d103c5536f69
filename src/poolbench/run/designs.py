"""How often the verdicts err, measured: simulated studies (``poolbench.analysis.simulate``) in three regimes, through
the real decision code, for the fixed designs and for the real adaptive-seeds sweeper.

    poolbench simulate            # the default test suite's sizes (a few minutes)
    poolbench simulate --full     # the sizes of README "Reading a verdict" (about half an hour on 2 cores)

A fixed design is a table of ``rows`` rows at ``seeds`` seeds (``simulate.decisions``: what ``poolbench table``
does). The adaptive design is ``AdaptiveSeeds.run`` itself, whose ``launch`` writes each job's record and test
predictions from the study's simulated world instead of training (``simulate.write_job``; the tests' Hydra launcher
``hydra/launcher=synthetic`` does the same through Hydra). Measured: the false-claim rate (all rows equal: any row
called worse), the rate at which one row better by ``effect`` points is found (it is the best and every other row is
shown worse) at 2 and 4 points, and the adaptive design's jobs against the fixed ``max_seeds`` grid.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from poolbench.analysis import simulate
from poolbench.analysis.decide import Kind
from poolbench.run.adaptive import AdaptiveSeeds

WORSE = (Kind.WORSE.value, Kind.CLEARLY_WORSE.value)


@dataclass
class Outcome:
    false_claims: float | None = None  # all rows equal: the share of studies where some row is called worse
    found: float | None = None  # one row better: the share where it is the best and every other row is worse
    jobs: float | None = None  # adaptive: the mean share of the fixed max_seeds grid's jobs
    studies: int = 0


def shifts(rows: int, effect: float) -> tuple:
    """The rows' quality: all equal, or the last better by ``effect`` points of accuracy."""
    return (0.0,) * (rows - 1) + (effect * simulate.POINT,)


def fixed(
    population: simulate.Population,
    studies: int,
    seeds: int,
    rows: int = 5,
    effect: float = 0.0,
    first: int = 0,
    n_boot: int = 300,
) -> Outcome:
    hits = 0
    for study in range(first, first + studies):
        world = simulate.World(population, study, shifts(rows, effect))
        preds = [{s: world.predictions(r, s) for s in range(1, seeds + 1)} for r in range(rows)]
        found = simulate.decisions(world.labels, preds, n_boot=n_boot, refine=False)  # rates, not digits
        kinds = [d.kind.value for d in found.rows]
        hits += _hit(kinds, found.best, rows, effect)
    rate = hits / studies
    return Outcome(false_claims=rate if effect == 0 else None, found=rate if effect else None, studies=studies)


def _hit(kinds: list[str], best: int | None, rows: int, effect: float) -> bool:
    if effect == 0:
        return any(k in WORSE for k in kinds)
    return best == rows - 1 and all(k in WORSE for i, k in enumerate(kinds) if i != best)


def synthetic_launch(world: simulate.World, sweep_dir: Path):
    """A ``launch(batch, first)`` for ``AdaptiveSeeds.run`` that writes the jobs of ``world`` instead of training:
    overrides ``pooling=rN`` pick the row, ``seed=S`` the seed."""

    def launch(batch: list[list[str]], first: int) -> None:
        for number, overrides in enumerate(batch, start=first):
            found = dict(o.split("=", 1) for o in overrides)
            choice = found["pooling"]
            simulate.write_job(
                sweep_dir / str(number),
                world,
                int(choice.removeprefix("r")),
                int(found["seed"]),
                {"pooling": choice},
                ",".join(overrides),
            )

    return launch


def adaptive(
    population: simulate.Population,
    studies: int,
    rows: int = 5,
    effect: float = 0.0,
    first: int = 0,
    min_seeds: int = 3,
    max_seeds: int = 10,
    bootstrap: int = 300,
    workdir: Path | None = None,
) -> Outcome:
    """The real sweeper's search on ``studies`` simulated studies; the verdicts are those of its last round."""
    hits, jobs = 0, []
    root = Path(workdir or tempfile.mkdtemp(prefix="poolbench-designs-"))
    for study in range(first, first + studies):
        sweep = root / f"study{study}"
        world = simulate.World(population, study, shifts(rows, effect))
        search = AdaptiveSeeds(min_seeds, max_seeds, metric="test/acc", bootstrap=bootstrap)
        grid = [[f"pooling=r{r}"] for r in range(rows)]
        search.run(grid, ["pooling"], synthetic_launch(world, sweep), sweep, outputs=False)
        lines = [json.loads(line) for line in (sweep / "decisions.jsonl").read_text().splitlines()]
        last, summary = lines[-2], lines[-1]
        kinds = {int(r["row"].removeprefix("pooling=r")): r["verdict"] for r in last["rows"]}
        best = next((i for i, k in kinds.items() if k == Kind.BEST.value), None)
        hits += _hit([kinds[i] for i in range(rows)], best, rows, effect)
        jobs.append(summary["jobs"] / summary["fixed_grid_jobs"])
        shutil.rmtree(sweep)
    rate = hits / studies
    return Outcome(rate if effect == 0 else None, rate if effect else None, float(np.mean(jobs)), studies)


SIZES = {  # studies per cell: the default test suite's, and README's
    "quick": {"fixed": 200, "adaptive": 40},
    "full": {"fixed": 600, "adaptive": 150},
}


def measure_all(size: str = "quick") -> list[dict]:
    """Every regime x design, null and with a 4-point difference; one dict per cell."""
    n = SIZES[size]
    found = []
    for name, population in simulate.REGIMES.items():
        for design in ("fixed 3", "fixed 5", "adaptive 3..10"):
            cell = {"regime": name, "design": design}
            for effect in (0.0, 2.0, 4.0):
                if design.startswith("fixed"):
                    out = fixed(population, n["fixed"], int(design.split()[1]), effect=effect)
                else:
                    out = adaptive(population, n["adaptive"], effect=effect)
                    cell["jobs" if effect == 0 else f"jobs_{effect:g}"] = out.jobs
                cell["false_claims" if effect == 0 else f"found_{effect:g}"] = (
                    out.false_claims if effect == 0 else out.found
                )
                cell["studies"] = out.studies
            found.append(cell)
            print(format_cell(cell), flush=True)
    return found


def format_cell(cell: dict) -> str:
    jobs = (
        f" | {cell['jobs'] * 100:.0f}% / {cell['jobs_2'] * 100:.0f}% / {cell['jobs_4'] * 100:.0f}%"
        if "jobs" in cell
        else " | -"
    )
    found = f"{cell['found_2'] * 100:.0f}% | {cell['found_4'] * 100:.0f}%"
    claims = f"{cell['false_claims'] * 100:.1f}%"
    return f"| {cell['regime']} | {cell['design']} | {claims} | {found}{jobs} | {cell['studies']} |"


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="poolbench simulate", description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="README's sizes (about half an hour on 2 cores)")
    args = parser.parse_args(argv)
    print(
        "| regime | design | false claims (5 equal rows) | found: one row +2 points | found: +4 points | jobs of the "
        "fixed 10-seed grid (null / +2 / +4) | studies per cell |\n|---|---|---|---|---|---|---|"
    )
    measure_all("full" if args.full else "quick")
    print(
        "\nalpha 0.05, margin 0.50 points; critical values and adjusted p-values as tables compute them "
        "(poolbench.analysis.maxt: within half a unit of their printed digits)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
