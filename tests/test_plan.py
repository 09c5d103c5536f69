"""`poolbench plan`: from finished runs, what more seeds would buy; its predictions agree with the full simulator."""

from __future__ import annotations

import pytest
from conftest import ROOT

from poolbench.analysis import plan, simulate
from poolbench.analysis.runs import find_runs
from poolbench.cli import main as cli
from poolbench.run import designs


def test_plan_prints_its_table_for_a_committed_study(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert cli(["plan", "experiments/pooling_ablation/runs", "--effect", "1", "--studies", "40"]) == 0
    out = capsys.readouterr().out
    assert "Fitted from 5 rows, 1920 test examples" in out and "seed-to-seed SD" in out
    assert "| 3 |" in out and "| 10 |" in out and "Adaptive seeds (3..10" in out
    assert "P(found: a row +1 points is the best" in out


@pytest.mark.slow
def test_plan_agrees_with_the_full_simulator(tmp_path):
    """A pilot (5 rows, 3 seeds) written from a simulated study of the luck regime; plan's predicted chance of finding
    a row 4 points better at 5 seeds, and its false-claim rate, against what the full simulator measures."""
    world = simulate.World(simulate.REGIMES["luck"], 77, (0.0,) * 5)
    for row in range(5):
        for seed in (1, 2, 3):
            simulate.write_job(tmp_path / f"{row}-{seed}", world, row, seed, {"pooling": f"r{row}"}, "")
    fitted = plan.fit(find_runs([tmp_path]), "test/acc")
    assert fitted.rows == 5 and fitted.examples == 1920
    rng = __import__("numpy").random.default_rng(0)
    predicted = plan.fixed_rates(fitted, 5, 0.04, 150, 0.05, 0.005, rng)
    measured = designs.fixed(simulate.REGIMES["luck"], studies=100, seeds=5, effect=4.0, first=3000)
    assert predicted["found"] == pytest.approx(measured.found, abs=0.2)
    assert predicted["false_claims"] <= 0.09
