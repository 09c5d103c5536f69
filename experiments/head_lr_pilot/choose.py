"""The head-rate pilot's grid and the rate it chooses, from its records.

    python experiments/head_lr_pilot/choose.py experiments/head_lr_pilot/runs experiments/head_lr_pilot/runs_scalar_mix

One line per setting (pooling, layers, pooling.scale), one column per ``model.head_lr``: validation macro-F1 and the
learned part's token or layer weights' top weight x count on the test set (1 = uniform; ``*``: stayed at its start,
README "Trained to what it can do"). The rule, fixed before the last jobs ran: among the rates at which no learned
part stayed at its start, the one with the smallest worst regret, a setting's regret at a rate being its best
validation macro-F1 over the rates minus its macro-F1 at that rate (minimax regret: the rate that is fair to every
row at once). Only the settings run at every rate vote. Validation only: the test set stays for the studies.
"""

from __future__ import annotations

import argparse
import math

from poolbench.analysis import runs


def setting(run: runs.Run) -> str:
    """What a row of the grid is: its pooling, with its layers and attention scale where they are not the default."""
    flat = run.flat
    name = str(flat.get("pooling"))
    if flat.get("layers", "last") != "last":
        name += f" layers={flat['layers']}"
    if flat.get("pooling.scale") is not None:
        name += f" scale={flat['pooling.scale']:g}"
    return name


def measure(learned: dict) -> tuple[float | None, bool]:
    """The learned part's top weight x count (token weights, else layer weights) and whether any part stayed."""
    stayed = any(part.get("stayed") for part in learned.values())
    for part in ("pooling", "layers"):
        found = learned.get(part) or {}
        weights = found.get("token_weights") or found.get("layer_weights")
        if weights:
            return weights["top_x_tokens" if "top_x_tokens" in weights else "top_x_layers"], stayed
    return None, stayed


def rate_text(rate) -> str:
    return "null (= model.lr)" if rate is None else f"{rate:g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+")
    args = parser.parse_args()
    grid: dict[str, dict] = {}
    for run in runs.find_runs(args.paths):
        if run.finished:
            rate = run.flat.get("model.head_lr")
            top, stayed = measure(run.record.learned or {})
            grid.setdefault(setting(run), {})[rate] = (run.metrics["val/f1_macro"], top, stayed)
    rates = sorted({r for row in grid.values() for r in row}, key=lambda r: -1.0 if r is None else r)
    print("| setting | " + " | ".join(f"head_lr {rate_text(r)}" for r in rates) + " |")
    print("|---|" + "---|" * len(rates))
    for name, row in grid.items():
        cells = []
        for r in rates:
            if r not in row:
                cells.append("")
                continue
            f1, top, stayed = row[r]
            cells.append(f"{100 * f1:.2f}" + ("" if top is None else f" / {top:.3f}") + ("*" if stayed else ""))
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(
        "\nval macro-F1 (%) / top weight x count on the test set (1 = uniform); *: a learned part stayed at its start"
    )
    complete = {name: row for name, row in grid.items() if set(row) == set(rates)}
    regret = {}
    for r in rates:
        if any(row[r][2] for row in complete.values()):
            continue  # some learned part stayed at its start at this rate: not a fair rate for that row
        regret[r] = max(100 * (max(v[0] for v in row.values()) - row[r][0]) for row in complete.values())
    print(f"\nworst regret (points of val macro-F1) over the {len(complete)} settings run at every rate:")
    for r in rates:
        print(f"- head_lr {rate_text(r)}: " + (f"{regret[r]:.2f}" if r in regret else "excluded (a part stayed)"))
    if regret:
        best = min(regret, key=lambda r: (regret[r], math.inf if r is None else r))
        print(f"\nchosen: head_lr {rate_text(best)} (smallest worst regret; a tie goes to the smaller rate)")


if __name__ == "__main__":
    main()
