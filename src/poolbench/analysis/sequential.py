"""A sequential design over seeds: the verdicts of the adaptive-seeds sweeper, look by look, and why each row stops.

The looks are at ``min_seeds``, ``min_seeds + 1``, ... ``max_seeds`` seeds. Look ``n`` spends ``alpha`` by a
Lan-DeMets spending function of the information fraction ``n / max_seeds`` (``decide.spent``; Pocock-type by default,
O'Brien-Fleming-type on request) and makes its claims (``decide.decide``: worse, worse by more than the margin, tied
within it) at that increment. A claim made at a look is final: the row stops. By the union bound over the looks the
chance of any false claim over the whole sweep stays at most ``alpha``, whatever the rows' numbers of seeds turn out to
be (the bound does not rely on the looks' correlation, so it is conservative, and valid under optional stopping).

A row that no claim has stopped goes on only while more seeds can still decide it: **futility**. Projected to
``max_seeds`` seeds (the seed part of its standard error shrinks, the test-set part stays), its conditional power
under the current estimate (``decide.conditional_power``) of being shown worse at the last look's level, or of being
shown within the margin, must reach ``futility`` (0.1); else it stops "inconclusive". When the equivalence floor is
above the margin, no number of seeds can give "tied": only "worse" is left to find. Futility never adds a claim, so it
costs power only, never error. The best row of a task gets a seed whenever another row of its task goes on.

``replay`` recomputes every look from the finished records (seeds in their order), so the adaptive sweeper, its
resumption and ``poolbench table`` on its folder reach the same verdicts from the same records.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from poolbench.analysis import decide
from poolbench.analysis.decide import SHOWN, Decision, Family, Kind


@dataclass(frozen=True)
class Design:
    min_seeds: int = 3
    max_seeds: int = 10
    alpha: float = 0.05
    margin: float = 0.005  # metric units (0.005 = 0.5 points)
    spending: str = "pocock"  # pocock | obrien_fleming
    futility: float = 0.1  # a row goes on only while its conditional power reaches this

    def __post_init__(self) -> None:
        if not 2 <= self.min_seeds <= self.max_seeds:
            raise ValueError(f"need 2 <= min_seeds <= max_seeds, got {self.min_seeds}, {self.max_seeds}")
        decide.spent(self.alpha, 1, 0, self.spending)  # an unknown spending function fails here

    def level(self, n: int) -> float:
        """The part of ``alpha`` the look at ``n`` seeds spends."""
        before = 0.0 if n <= self.min_seeds else (n - 1) / self.max_seeds
        return decide.spent(self.alpha, n / self.max_seeds, before, self.spending)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class State:
    decision: Decision
    state: str  # best | open | decided | futile | max_seeds
    seeds: int
    at: str | None = None  # the look that decided it
    why: str = ""
    power: dict | None = None  # conditional power at max_seeds: {"worse": .., "tied": ..}
    boundary: float | None = None  # the difference to the best (metric units) this look would have called worse


@dataclass
class Look:
    seeds: int
    alpha: float  # spent at this look
    critical: float  # simultaneous critical value at that level
    rows: list[State]
    precision: decide.Precision = field(default_factory=decide.Precision)  # the numerical error of its numbers


@dataclass
class Replay:
    family: Family  # at the last look (every seed)
    states: list[State]
    looks: list[Look] = field(default_factory=list)

    @property
    def precision(self) -> decide.Precision:
        """The largest numerical error over the looks."""
        found = decide.Precision()
        for look in self.looks:
            found = found.worst(look.precision)
        return found


def _ordered(row: dict) -> list:
    return sorted(row, key=lambda s: (not isinstance(s, int | float), s if isinstance(s, int | float) else str(s)))


def replay(rows: list[dict], design: Design) -> Replay:
    """The design's looks over ``rows`` (per row: seed -> ``Resampled``; every row resampled with the same examples),
    each look seeing each row's first ``n`` seeds."""
    k = len(rows)
    seeds = [_ordered(r) for r in rows]
    states: list[State] | None = None
    looks = []
    for n in range(design.min_seeds, max(max(len(s) for s in seeds), design.min_seeds) + 1):
        sub = [{s: rows[i][s] for s in seeds[i][:n]} for i in range(k)]
        if any(len(r) < 2 for r in sub):
            break
        states, found = look(decide.family_from(list(range(k)), sub), n, design, states)
        looks.append(found)
    full = decide.family_from(list(range(k)), rows)
    return Replay(full, states if states is not None else _unlooked(rows), looks)


def look(family: Family, n: int, design: Design, before: list[State] | None, refine: bool = True):
    """One look at ``n`` seeds: the rows' states after it (from ``before``, the states after the previous look) and
    the look's record. A claim made earlier stands while its row has no new seeds; the best row is always "best".
    ``refine``: as ``decide.decide`` (``False`` in simulations)."""
    level = design.level(n)
    found = decide.decide(family, level, design.margin, refine)
    at = f"{n} seeds, alpha {level:.3g}"
    states = list(before) if before is not None else [None] * family.k
    for i, d in enumerate(found.rows):
        seen = int(family.n[i])
        edge = None if i == found.best else found.critical * family.se(i, found.best)
        done = states[i] is not None and states[i].state in ("decided", "futile")
        if d.kind is Kind.BEST:
            states[i] = State(d, "best", seen)
            continue
        if done and states[i].seeds == seen:
            continue  # decided at an earlier look, nothing new: the claim stands
        if d.kind in SHOWN:
            states[i] = State(d, "decided", seen, at, f"{d.kind.value}: shown at this look")
        else:
            states[i] = _go_on(family, found, i, d, design, at, seen)
        states[i].boundary = edge
    open_rows = any(s.state == "open" for s in states)
    for s in states:
        if s.state == "best":
            s.why = "the best: goes on with the rows of its task" if open_rows else "the best: every other row decided"
    return states, Look(n, level, found.critical, [State(**vars(s)) for s in states], found.precision)


def _unlooked(rows: list[dict]) -> list[State]:
    return [State(Decision(Kind.NA), "open", len(r), why="fewer seeds than the first look") for r in rows]


def _go_on(family: Family, found, i: int, d: Decision, design: Design, at: str, seen: int) -> State:
    """An open row: does it go on (conditional power), stop for futility, or has it reached max_seeds?"""
    from scipy.stats import norm

    best = found.best
    final = family.n.astype(float).copy()
    final[[i, best]] = design.max_seeds
    se_now, se_final = family.se(i, best), family.se(i, best, family.cov(final))
    pairs = family.k * (family.k - 1) / 2
    critical_final = float(norm.ppf(1 - design.level(design.max_seeds) / (2 * pairs)))  # Bonferroni: conservative
    diff = float(family.means[i] - family.means[best])
    power = decide.conditional_power(diff, se_now, se_final, critical_final, design.margin)
    floor = d.floor if d.floor is not None else math.nan
    if seen >= design.max_seeds:
        return State(d, "max_seeds", seen, at, f"open at max_seeds ({design.max_seeds})", power)
    if max(power.values()) < design.futility:
        why = (
            f"futile: P(shown worse by {design.max_seeds} seeds) = {power['worse']:.2f}, "
            f"P(shown tied) = {power['tied']:.2f}, both below {design.futility:g}"
        )
        if floor > design.margin:
            why += f"; the equivalence floor {decide.points(floor):.2f} is above the margin"
        return State(d, "futile", seen, at, why, power)
    return State(d, "open", seen, None, "open: more seeds can still decide it", power)


def spending_table(design: Design) -> list[tuple[int, float]]:
    """(seeds, alpha spent) of every look: what README and decisions.jsonl show."""
    return [(n, design.level(n)) for n in range(design.min_seeds, design.max_seeds + 1)]


__all__ = ["Design", "Look", "Replay", "State", "replay", "spending_table"]
