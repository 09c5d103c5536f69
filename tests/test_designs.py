"""The verdicts err as often as they say, in the designs poolbench runs: simulated studies whose truth is known
(poolbench.analysis.simulate), decided by the real code: the tables' (fixed designs) and the real adaptive-seeds
sweeper's, through a launcher that writes synthetic records instead of training. Three regimes: the project's (fitted
to the committed records), training luck dominant, heavy tails. Sizes here are the acceptance's (or reduced, said
where); `poolbench simulate --full` runs README's."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, read_record

from poolbench.analysis import simulate
from poolbench.cli import main as cli
from poolbench.run import designs

LUCK, PROJECT, HEAVY = (simulate.REGIMES[k] for k in ("luck", "project", "heavy_tails"))
pytestmark = pytest.mark.slow


def test_the_luck_regime_is_what_its_name_says():
    """Training luck dominant: a per-model quality offset of ~1.3 points of accuracy, against ~0.55 for the project."""
    spread = {
        name: simulate.measure([simulate.World(p, s, (0.0,) * 3).labels_and_preds(3) for s in range(6)])
        for name, p in (("luck", LUCK), ("project", PROJECT))
    }
    assert spread["luck"]["seed_sd"] > 1.5 * spread["project"]["seed_sd"] and spread["luck"]["seed_sd"] > 0.01


def test_fixed_design_five_equal_rows_three_seeds_training_luck_dominant():
    """Acceptance: >= 400 studies, false claims <= 6% (the best chosen by the data: every pair in the family)."""
    found = designs.fixed(LUCK, studies=400, seeds=3)
    assert found.false_claims <= 0.06


@pytest.mark.parametrize("population", [PROJECT, HEAVY], ids=["project", "heavy_tails"])
def test_fixed_design_false_claims_in_the_other_regimes(population):
    """Reduced size (150 studies: a 6% rate would be seen above 9% one time in twenty)."""
    assert designs.fixed(population, studies=150, seeds=3, first=1000).false_claims <= 0.09


def test_fixed_design_finds_a_row_four_points_better_at_five_seeds():
    """Acceptance: it is the best and every other row is shown worse in most studies (training luck dominant)."""
    assert designs.fixed(LUCK, studies=100, seeds=5, effect=4.0).found > 0.5


def test_the_real_adaptive_sweeper_stays_valid_and_saves_jobs(tmp_path):
    """Acceptance: 5 equal rows, >= 100 studies: false claims <= 6% and on average <= 70% of the fixed 10-seed grid's
    jobs; one row +4 points: found in most studies (40 studies here)."""
    null = designs.adaptive(LUCK, studies=100, workdir=tmp_path)
    assert null.false_claims <= 0.06 and null.jobs <= 0.7
    better = designs.adaptive(LUCK, studies=40, effect=4.0, first=500, workdir=tmp_path)
    assert better.found > 0.5


def test_the_sweeper_through_hydra_with_the_synthetic_launcher(tmp_path):
    """`hydra/sweeper=adaptive_seeds hydra/launcher=synthetic`: Hydra runs the real sweeper, the launcher writes the
    records of a simulated study where `mean` is 4 points better; `poolbench table` on the sweep folder reads the
    design from decisions.jsonl and gives the sweeper's verdicts."""
    sweep = tmp_path / "sweep"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests" / "plugins"), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    args = [
        sys.executable,
        "train.py",
        "-m",
        "debug=smoke",
        "hydra/sweeper=adaptive_seeds",
        "hydra/launcher=synthetic",
        "pooling=cls,mean,max,attention,pooler",
        "hydra.launcher.regime=luck",
        "hydra.launcher.study=1",
        "hydra.launcher.effect=4",
        "hydra.launcher.better=mean",
        f"hydra.sweep.dir={sweep}",
        "hydra.sweeper.metric=test/acc",
        "logger=none",
    ]
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in (sweep / "decisions.jsonl").read_text().splitlines()]
    assert lines[0]["design"]["spending"] == "pocock" and lines[-1]["jobs"] < lines[-1]["fixed_grid_jobs"]
    last = {r["label"]: r for r in lines[-2]["rows"]}
    assert last["pooling=mean"]["verdict"] == "best"
    assert all(
        r["verdict"] in ("worse", "clearly worse", "inconclusive") for k, r in last.items() if k != "pooling=mean"
    )
    assert all("looks" in line and "rows" in line for line in lines[1:-1])
    assert any("conditional_power" in r for line in lines[1:-1] for r in line["rows"])
    assert all("boundary_points" in r for line in lines[1:-1] for r in line["rows"] if r["verdict"] != "best")
    assert read_record(sweep / "0")["status"] == "finished"
    assert cli(["archive", str(sweep), str(tmp_path / "archive")]) == 0  # the design travels with the records
    assert (tmp_path / "archive" / "decisions.jsonl").read_text() == (sweep / "decisions.jsonl").read_text()
    archive = str(tmp_path / "archive")
    assert cli(["table", archive, "--metric", "test/acc", "--by", "pooling", "--out", str(tmp_path / "t")]) == 0
    rebuilt = (tmp_path / "t" / "table.md").read_text()
    for label, row in last.items():
        cell = {"clearly worse": "worse > 0.50"}.get(row["verdict"], row["verdict"])
        assert any(
            line.startswith(f"| {label.split('=')[1]} |") and f"| {cell} " in line for line in rebuilt.splitlines()
        ), (label, cell)


def test_a_row_alone_in_its_task_stops_after_the_first_round(tmp_path):
    """Nothing to compare it with: more seeds cannot decide anything."""
    from poolbench.run.adaptive import AdaptiveSeeds

    world = simulate.World(PROJECT, 5, (0.0,))
    search = AdaptiveSeeds(3, 10, metric="test/acc", bootstrap=100)
    search.run([["pooling=r0"]], ["pooling"], designs.synthetic_launch(world, tmp_path), tmp_path, outputs=False)
    lines = [json.loads(line) for line in (tmp_path / "decisions.jsonl").read_text().splitlines()]
    assert lines[-1]["jobs"] == 3 and lines[1]["rows"][0]["why"] == "alone in its task: nothing to compare it with"
