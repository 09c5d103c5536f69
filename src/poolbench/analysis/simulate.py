"""Simulated studies whose truth is known: do ``poolbench table``'s intervals and verdicts err as often as they say?

    python -m poolbench.analysis.simulate [--studies 1000]     # coverage of the intervals (two rows)
    poolbench simulate [--full]                                 # verdicts: regimes x designs (poolbench.run.designs)

A simulated study is what an ablation gives: rows (poolings) trained with seeds and tested on one test set drawn from
a population. Each model predicts ``argmax_k z_k`` with logits

    z_k = (quality_r + g_rs - drop_rs - difficulty_i) [k = y_i] + w_ik + v_rik + e_sik + u_rsik

``difficulty`` and ``w`` (which wrong class looks right) belong to the example and are shared by every model;
``v`` is the row's own way with an example (shared by its seeds); ``e`` is the seed's (shared by the rows trained
with it: the pairing by seed); ``u`` is the model's own noise, ``g`` its overall luck in training, and ``drop`` a
degraded run (heavy tails). A ``World`` is one study: its test set and every model are drawn from fixed seeds, so a
model is the same whenever it is asked for (the adaptive sweeper asks round by round).

The regimes (``REGIMES``): ``project`` reproduces the committed fine-tuned ablation (``measure``; checked by the
tests); ``luck`` makes training luck dominant (a per-model quality offset of ~1.3 points of accuracy); ``heavy_tails``
degrades 10% of the runs by ~5 points.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from poolbench.analysis import decide
from poolbench.analysis.stats import accuracy, compare_rows, draw, macro_f1, resample

POINT = 0.058  # logit quality per point of accuracy near 70% (measured: +0.1 -> +1.72 points)


@dataclass(frozen=True)
class Population:
    """The scales of the logit model; the defaults reproduce the fine-tuned pooling ablation (see ``measure``)."""

    n_examples: int = 1920
    n_classes: int = 4
    quality: float = 1.97  # the correct class's head start: sets the accuracy (~70%)
    difficulty: float = 1.6  # per example, shared by all models
    confusion: float = 1.0  # w: per example and class, shared by all models
    row: float = 0.16  # v: per row, example and class
    seed: float = 0.23  # e: per seed, example and class, shared by the rows trained with that seed
    model: float = 0.16  # u: per model, example and class
    luck: float = 0.035  # g: a model's overall luck in training, on the logit scale
    degraded: float = 0.0  # the chance that a run is degraded
    drop: float = 0.0  # how much quality a degraded run loses (logit)

    def study(self, rng: np.random.Generator, seeds: int = 3, shift: float = 0.0, paired: bool = True) -> tuple:
        """(labels, {row: {seed: predictions}}) of a two-row study; row ``b``'s quality is raised by ``shift``. Unless
        ``paired``, row ``b`` is trained with other seeds than row ``a`` (and they are named ``s + seeds``)."""
        world = World(self, int(rng.integers(1 << 31)), (0.0, shift))
        offset = 0 if paired else seeds
        preds = {
            "a": {s: world.predictions(0, s) for s in range(seeds)},
            "b": {s + offset: world.predictions(1, s + offset) for s in range(seeds)},
        }
        return world.labels, preds


REGIMES = {
    "project": Population(),
    "luck": Population(luck=0.075),
    "heavy_tails": Population(degraded=0.1, drop=5 * POINT),
}


@dataclass
class World:
    """One simulated study: a test set and rows of models, every draw fixed by ``study`` (and row, seed)."""

    population: Population
    study: int
    shifts: tuple | dict = (0.0, 0.0)  # quality of each row above the population's, logit (by index or row id)
    _cache: dict = field(default_factory=dict, repr=False)

    def _rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng([self.study, *key])

    @property
    def labels(self) -> np.ndarray:
        return self._example()[0]

    def _example(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if "example" not in self._cache:
            p, rng = self.population, self._rng(0)
            labels = rng.integers(0, p.n_classes, p.n_examples)
            onehot = np.eye(p.n_classes, dtype=bool)[labels]
            shared = (
                rng.normal(0, p.confusion, onehot.shape) - p.difficulty * rng.standard_normal((len(labels), 1)) * onehot
            )
            self._cache["example"] = labels, onehot, shared
        return self._cache["example"]

    def _part(self, name: str, key: tuple, scale: float) -> np.ndarray:
        if (name, key) not in self._cache:
            shape = (self.population.n_examples, self.population.n_classes)
            self._cache[name, key] = self._rng({"row": 1, "seed": 2}[name], *key).normal(0, scale, shape)
        return self._cache[name, key]

    def labels_and_preds(self, seeds: int) -> tuple[np.ndarray, dict]:
        """(labels, {row: {seed: predictions}}) of every row with seeds 1..``seeds``, as ``measure`` reads them."""
        rows = range(len(self.shifts))
        return self.labels, {r: {s: self.predictions(r, s) for s in range(1, seeds + 1)} for r in rows}

    def predictions(self, row: int, seed: int) -> np.ndarray:
        p = self.population
        labels, onehot, shared = self._example()
        rng = self._rng(3, row, seed)
        shift = self.shifts.get(row, 0.0) if isinstance(self.shifts, dict) else self.shifts[row]
        head = p.quality + shift + rng.normal(0, p.luck) - (p.drop if rng.random() < p.degraded else 0.0)
        noise = rng.normal(0, p.model, onehot.shape)
        logits = shared + self._part("row", (row,), p.row) + self._part("seed", (seed,), p.seed) + noise
        return (logits + head * onehot).argmax(1)


def decisions(
    labels: np.ndarray,
    rows: list[dict],
    alpha: float = 0.05,
    margin: float = 0.005,
    n_boot: int = 500,
    metric=accuracy,
    n_classes: int = 4,
    refine: bool = True,
) -> decide.Decisions:
    """The verdicts ``poolbench table`` gives these rows (per row: seed -> predictions): the same code path.
    ``refine=False``: the first estimate of the critical values only (``decide.decide``), for simulations that count
    verdicts: refining moves the printed digits, and a verdict only where a p-value is within its error of alpha."""
    idx = draw(len(labels), n_boot)
    resampled = [{s: resample(metric, labels, p, idx, n_classes) for s, p in row.items()} for row in rows]
    return decide.decide(decide.family_from(list(range(len(rows))), resampled), alpha, margin, refine)


def write_job(folder: Path, world: World, row: int, seed: int, choices: dict, overrides: str) -> None:
    """A job folder as a trained job leaves it (record and test predictions), for the model (``row``, ``seed``) of
    ``world``: what the tests' synthetic launcher writes instead of training."""
    from poolbench.record import RunRecord, write_predictions

    labels, preds = world.labels, world.predictions(row, seed)
    k = world.population.n_classes
    folder.mkdir(parents=True, exist_ok=True)
    write_predictions(
        folder,
        [{"idx": i, "label": int(y), "pred": int(q)} for i, (y, q) in enumerate(zip(labels, preds, strict=True))],
    )
    names = [str(c) for c in range(k)]
    config = {"seed": seed, "data": {"name": "simulated", "study": world.study}}
    config.update({g: {"name": v} for g, v in choices.items()})
    metrics = {"test/acc": float(accuracy(labels, preds, k)), "test/f1_macro": float(macro_f1(labels, preds, k))}
    confusion = np.zeros((k, k), dtype=int)
    np.add.at(confusion, (labels, preds), 1)
    matrix = {"labels": names, "rows_true_cols_pred": confusion.tolist()}
    record = RunRecord(
        status="finished",
        choices={"data": "simulated", **choices},
        overrides=overrides,
        config=config,
        metrics=metrics,
        confusion_matrix=matrix,
    )
    record.write(folder / "results.json")


def measure(labels_and_preds: list[tuple[np.ndarray, dict]]) -> dict[str, float]:
    """Accuracy, median seed-to-seed SD of a row's accuracy, and the disagreement between two seeds of one row
    and between two rows of one seed; from studies as ``Population.study`` gives them or as records give them."""
    accs, sds, within, between = [], [], [], []
    for labels, rows in labels_and_preds:
        for seeds in rows.values():
            a = [float(np.mean(p == labels)) for p in seeds.values()]
            accs += a
            sds += [float(np.std(a, ddof=1))] if len(a) > 1 else []
            within += [float(np.mean(seeds[s] != seeds[t])) for s, t in itertools.combinations(seeds, 2)]
        for r, q in itertools.combinations(rows, 2):
            between += [float(np.mean(rows[r][s] != rows[q][s])) for s in set(rows[r]) & set(rows[q])]
    return {
        "accuracy": float(np.mean(accs)),
        "seed_sd": float(np.median(sds)),
        "disagree_seeds": float(np.mean(within)),
        "disagree_rows": float(np.mean(between)),
    }


def coverage(
    population: Population,
    studies: int,
    seeds: int = 3,
    shift: float = 0.0,
    n_boot: int = 300,
    rng_seed: int = 0,
    method: str = "seeds",
    paired: bool = True,
) -> dict[str, float]:
    """Over ``studies`` simulated studies: how often the 95% interval of the accuracy difference covers the true
    difference (``truth``, estimated from a large simulation when ``shift`` is not 0) and how often it excludes 0;
    ``tail``: how often the p-value is below 0.0125 (the first level of Holm or of a step-down over 4 rows)."""
    rng = np.random.default_rng(rng_seed)
    truth = 0.0 if shift == 0 else true_difference(population, shift)
    covered = excluded = tail = 0
    for _ in range(studies):
        labels, preds = population.study(rng, seeds, shift, paired)
        comp = compare_rows(
            labels, preds["a"], preds["b"], accuracy, population.n_classes, n_boot, rng.integers(1 << 31), method
        )
        covered += comp.low <= truth <= comp.high
        excluded += not comp.low <= 0 <= comp.high
        tail += comp.p_value < 0.0125
    return {"truth": truth, "coverage": covered / studies, "excludes_zero": excluded / studies, "tail": tail / studies}


def true_difference(population: Population, shift: float, studies: int = 40, seeds: int = 10) -> float:
    """The population difference of accuracy that ``shift`` makes: averaged over many examples and seeds."""
    rng = np.random.default_rng(12345)
    diffs = []
    for _ in range(studies):
        labels, preds = population.study(rng, seeds, shift)
        diffs += [np.mean(preds["b"][s] == labels) - np.mean(preds["a"][s] == labels) for s in range(seeds)]
    return float(np.mean(diffs))


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m poolbench.analysis.simulate", description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--shift", type=float, default=0.12, help="quality shift of row b for the power check")
    parser.add_argument("--regime", choices=[*REGIMES, "all"], default="project")
    args = parser.parse_args(argv)
    for name, population in REGIMES.items():
        if args.regime not in (name, "all"):
            continue
        rng = np.random.default_rng(1)
        found = measure([population.study(rng) for _ in range(20)])
        print(f"{name}: " + ", ".join(f"{k}={v:.4f}" for k, v in found.items()))
        for shift in (0.0, args.shift):
            for method, paired in (("seeds", True), ("seeds", False), ("examples", True)):
                found = coverage(population, args.studies, args.seeds, shift, method=method, paired=paired)
                print(
                    f"  shift={shift} {method} {'paired' if paired else 'unpaired'}: "
                    + ", ".join(f"{k}={v:.4f}" for k, v in found.items())
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
