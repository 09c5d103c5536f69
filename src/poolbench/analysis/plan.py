"""Plan before you spend: from finished runs (a pilot sweep or a committed study), what more seeds would buy.

    poolbench plan experiments/pooling_ablation/runs --effect 1 [--max-seeds 10] [--margin 0.5] [--metric test/acc]

Fitted from the runs (``fit``): the accuracy, the seed-to-seed spread and the two disagreement rates (the simulator's
scales, ``simulate.measure``), the test-set size, and the two variance parts the verdicts use (the pooled seed
variance and the test-set covariance of the rows, ``decide.family_from``). Simulated from them (``simulate_plan``):
studies of the same rows whose per-model metric is ``mu_r + t_r + e_rs`` (``t``: the test-set part, drawn with the
fitted covariance; ``e``: the seed part), decided by the same code as the tables (``decide.decide``) and the
adaptive sweeper (``sequential.look``). Printed for 3..max seeds: the chance that a row better by ``effect`` points
is found (it is the best and every other row is shown worse), the false-claim rate when all rows are equal, and the
equivalence floor; and the adaptive design's expected jobs against the fixed grid. ``tests/test_plan.py`` checks the
predictions against the full simulator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from poolbench.analysis import decide, sequential
from poolbench.analysis.decide import Family, Kind
from poolbench.analysis.maxt import symmetric_root

WORSE = (Kind.WORSE, Kind.CLEARLY_WORSE)


@dataclass
class Fit:
    rows: int
    examples: int
    seed_var: float
    test_cov: np.ndarray
    measured: dict  # accuracy, seed_sd, disagree_seeds, disagree_rows
    metric: str


def fit(runs, metric: str = "test/acc", by: list[str] | None = None) -> Fit:
    """The planning parameters of ``runs`` (one task): their table's family and the simulator's scales."""
    from poolbench.analysis.simulate import measure
    from poolbench.analysis.table import build_table

    table = build_table(runs, by=by, metrics=[metric], n_boot=1000)
    if metric not in table.families:
        raise ValueError(
            f"poolbench plan: need at least two rows with two seeds or more and test predictions for {metric}"
        )
    family, members, _ = table.families[metric]
    preds, labels = {}, None
    for i, row in enumerate(members):
        for run in row.runs:
            if run.has_predictions():
                labels, p = run.predictions()
                preds.setdefault(i, {})[run.seed] = p
    return Fit(family.k, len(labels), family.seed_var, family.test_cov, measure([(labels, preds)]), metric)


def _family(values: np.ndarray, test_cov: np.ndarray) -> Family:
    """A simulated table (``values``: rows x seeds) as a family: two-way means and residual, as the pilot's."""
    k, n = values.shape
    means = values.mean(axis=1)
    residual = values - means[:, None] - values.mean(axis=0)[None, :] + values.mean()
    df = (k - 1) * (n - 1)
    seed_var = float(np.sum(residual**2) / df)
    return Family(list(range(k)), means, np.full(k, n), seed_var, df, test_cov, layout="two-way")


def _draw(f: Fit, rng: np.random.Generator, effect: float, seeds: int) -> np.ndarray:
    mu = np.zeros(f.rows)
    mu[-1] = effect
    # the symmetric root, not numpy's SVD factor: that one depends on the kernel where singular values repeat
    offsets = symmetric_root(f.test_cov) @ rng.standard_normal(f.rows)
    return mu[:, None] + offsets[:, None] + rng.normal(0, np.sqrt(f.seed_var), (f.rows, seeds))


def fixed_rates(f: Fit, seeds: int, effect: float, studies: int, alpha: float, margin: float, rng) -> dict:
    found = false = 0
    for _ in range(studies):
        d = decide.decide(_family(_draw(f, rng, effect, seeds), f.test_cov), alpha, margin, refine=False)
        others = [r.kind for i, r in enumerate(d.rows) if i != d.best]
        found += d.best == f.rows - 1 and all(k in WORSE for k in others)
        null = decide.decide(_family(_draw(f, rng, 0.0, seeds), f.test_cov), alpha, margin, refine=False)
        false += any(r.kind in WORSE for r in null.rows)
    return {"found": found / studies, "false_claims": false / studies}


def adaptive_jobs(f: Fit, design: sequential.Design, effect: float, studies: int, rng) -> float:
    """The adaptive design's mean share of the fixed ``max_seeds`` grid's jobs (the sweeper's rule, on draws)."""
    shares = []
    for _ in range(studies):
        values = _draw(f, rng, effect, design.max_seeds)
        have = np.full(f.rows, design.min_seeds)
        states, n = None, design.min_seeds
        while True:
            means = np.array([values[r, : have[r]].mean() for r in range(f.rows)])
            family = _family(values[:, : design.min_seeds], f.test_cov)  # the residual of the balanced part
            family.means, family.n = means, have.copy()
            states, _ = sequential.look(family, n, design, states, refine=False)
            go = [i for i, s in enumerate(states) if s.state == "open"]
            if not go or n >= design.max_seeds:
                break
            go += [i for i, s in enumerate(states) if s.state == "best"]
            n += 1
            have[go] = n
        shares.append(have.sum() / (f.rows * design.max_seeds))
    return float(np.mean(shares))


def plan(
    f: Fit,
    effect_points: float,
    max_seeds: int = 10,
    margin_points: float = 0.5,
    alpha: float = 0.05,
    studies: int = 200,
    seed: int = 0,
) -> dict:
    rng = np.random.default_rng(seed)
    effect, margin = decide.fraction(effect_points), decide.fraction(margin_points)
    lines = []
    for n in range(3, max_seeds + 1):
        rates = fixed_rates(f, n, effect, studies, alpha, margin, rng)
        lines.append({"seeds": n, **rates})
    floor_family = _family(_draw(f, rng, 0.0, 3), f.test_cov)
    floors = [x for x in decide.equivalence_floors(floor_family, alpha, refine=False)[0] if x is not None]
    design = sequential.Design(3, max_seeds, alpha, margin)
    jobs = {
        "null": adaptive_jobs(f, design, 0.0, max(studies // 4, 20), rng),
        "effect": adaptive_jobs(f, design, effect, max(studies // 4, 20), rng),
    }
    return {
        "fixed": lines,
        "floor": float(np.median(floors)),
        "jobs": jobs,
        "effect": effect_points,
        "margin": margin_points,
        "max_seeds": max_seeds,
        "rows": f.rows,
    }


def format_plan(f: Fit, found: dict) -> str:
    m = f.measured
    head = [
        f"Fitted from {f.rows} rows, {f.examples} test examples, {f.metric}: accuracy {m['accuracy'] * 100:.2f}%, "
        f"seed-to-seed SD {m['seed_sd'] * 100:.2f} points, two seeds of a row disagree on "
        f"{m['disagree_seeds'] * 100:.1f}% of the texts, two rows of a seed on {m['disagree_rows'] * 100:.1f}%; "
        f"seed part SD {np.sqrt(f.seed_var) * 100:.2f} points per model, test-set part SD "
        f"{np.sqrt(np.mean(np.diag(f.test_cov))) * 100:.2f} points per row.",
        "",
        f"| seeds | P(found: a row +{found['effect']:g} points is the best, every other row worse) | "
        "P(false claim: all rows equal) | equivalence floor |",
        "|---|---|---|---|",
    ]
    floor = f"±{decide.points(found['floor']):.2f}"
    head += [
        f"| {r['seeds']} | {r['found'] * 100:.0f}% | {r['false_claims'] * 100:.1f}% | {floor} |" for r in found["fixed"]
    ]
    jobs = found["jobs"]
    head += [
        "",
        f"Adaptive seeds (3..{found['max_seeds']}, margin ±{found['margin']:.2f}): expected "
        f"{jobs['null'] * 100:.0f}% of the fixed {found['max_seeds']}-seed grid's jobs when all rows are equal, "
        f"{jobs['effect'] * 100:.0f}% with one row +{found['effect']:g} points.",
    ]
    if found["margin"] < decide.points(found["floor"]):
        head.append(
            f"Warning: the margin ±{found['margin']:.2f} is below the equivalence floor {floor}: no row can be "
            "shown tied on this test set, however many seeds."
        )
    return "\n".join(head)
