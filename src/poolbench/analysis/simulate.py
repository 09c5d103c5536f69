"""Simulated studies whose truth is known: do ``poolbench table``'s intervals cover it as often as they claim?

    python -m poolbench.analysis.simulate [--studies 1000] [--records experiments/pooling_ablation/runs ...]

A simulated study is what a 3-seed ablation gives: two rows (poolings) trained with the same seeds and tested on
one test set drawn from a population. Each model predicts ``argmax_k z_k`` with logits

    z_k = (quality_r + g_rs - difficulty_i) [k = y_i] + w_ik + v_rik + e_sik + u_rsik

``difficulty`` and ``w`` (which wrong class looks right) belong to the example and are shared by every model;
``v`` is the row's own way with an example (shared by its seeds); ``e`` is the seed's (shared by the two rows
trained with it: the pairing by seed); ``u`` is the model's own noise and ``g`` its overall luck in training.
Every study draws new test examples and new seeds. The scales are set so that accuracy, the seed-to-seed spread
of accuracy and the agreement rates match those measured in the committed records (``measure``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from poolbench.analysis.stats import accuracy, compare_rows


@dataclass
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

    def study(self, rng: np.random.Generator, seeds: int = 3, shift: float = 0.0, paired: bool = True) -> tuple:
        """(labels, {row: {seed: predictions}}) of one study; row ``b``'s quality is raised by ``shift``. Unless
        ``paired``, row ``b`` is trained with other seeds than row ``a`` (and they are named ``s + seeds``)."""
        n, k = self.n_examples, self.n_classes
        labels = rng.integers(0, k, n)
        onehot = np.eye(k, dtype=bool)[labels]  # (n, k)
        shared = rng.normal(0, self.confusion, (n, k)) - self.difficulty * rng.standard_normal((n, 1)) * onehot
        by_seed = {s: rng.normal(0, self.seed, (n, k)) for s in range(seeds if paired else 2 * seeds)}
        preds: dict = {}
        for name, quality, first in (("a", self.quality, 0), ("b", self.quality + shift, 0 if paired else seeds)):
            own = rng.normal(0, self.row, (n, k))
            preds[name] = {}
            for s in range(first, first + seeds):
                head = quality + rng.normal(0, self.luck)
                logits = shared + own + by_seed[s] + rng.normal(0, self.model, (n, k)) + head * onehot
                preds[name][s] = logits.argmax(1)
        return labels, preds


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
    return {"accuracy": float(np.mean(accs)), "seed_sd": float(np.median(sds)),
            "disagree_seeds": float(np.mean(within)), "disagree_rows": float(np.mean(between))}  # fmt: skip


def coverage(population: Population, studies: int, seeds: int = 3, shift: float = 0.0, n_boot: int = 300,
             rng_seed: int = 0, method: str = "seeds", paired: bool = True) -> dict[str, float]:  # fmt: skip
    """Over ``studies`` simulated studies: how often the 95% interval of the accuracy difference covers the true
    difference (``truth``, estimated from a large simulation when ``shift`` is not 0) and how often it excludes 0."""
    rng = np.random.default_rng(rng_seed)
    truth = 0.0 if shift == 0 else true_difference(population, shift)
    covered = excluded = 0
    for _ in range(studies):
        labels, preds = population.study(rng, seeds, shift, paired)
        comp = compare_rows(labels, preds["a"], preds["b"], accuracy, population.n_classes, n_boot,
                            rng.integers(1 << 31), method)  # fmt: skip
        covered += comp.low <= truth <= comp.high
        excluded += not comp.low <= 0 <= comp.high
    return {"truth": truth, "coverage": covered / studies, "excludes_zero": excluded / studies}


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
    parser.add_argument("--shift", type=float, default=0.2, help="quality shift of row b for the power check")
    args = parser.parse_args(argv)
    population = Population()
    rng = np.random.default_rng(1)
    found = measure([population.study(rng) for _ in range(20)])
    print("simulated population: " + ", ".join(f"{k}={v:.4f}" for k, v in found.items()))
    for shift in (0.0, args.shift):
        for method, paired in (("seeds", True), ("seeds", False), ("examples", True)):
            found = coverage(population, args.studies, args.seeds, shift, method=method, paired=paired)
            print(f"shift={shift} {method} {'paired' if paired else 'unpaired'}: "
                  + ", ".join(f"{k}={v:.4f}" for k, v in found.items()))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
