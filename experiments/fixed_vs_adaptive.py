"""What an adaptive-seeds study saved, from its records: jobs against the fixed grids, and whether the verdicts of the
fixed first round (every row at min_seeds seeds, the table's fixed rule) differ from the study's final ones.

    python experiments/fixed_vs_adaptive.py experiments/domain_finetuned/runs --min-seeds 3 --max-seeds 10

A fixed max_seeds grid cannot be judged from the records (those seeds were not run for rows that stopped early),
so the comparison is with the fixed min_seeds grid, which every adaptive study contains as its first round.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

from poolbench.analysis import decide, runs, tasks
from poolbench.cli import sequential_design


def verdicts(found, by: list[str], metric: str, design) -> dict[str, str]:
    study = tasks.build_study(found, by=by, metrics=[metric], n_boot=1000, margin=decide.fraction(0.5), design=design)
    out = {}
    for table in study.tables:
        for row in table.rows:
            verdict = row.verdict.get(metric)
            label = " ".join(f"{k}={v}" for k, v in zip(by, row.key, strict=True))
            out[f"{table.task or ''} {label}".strip()] = str(verdict.kind) if verdict else "-"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs")
    parser.add_argument("--by", default="pooling")
    parser.add_argument("--metric", default="test/f1_macro")
    parser.add_argument("--min-seeds", type=int, default=3)
    parser.add_argument("--max-seeds", type=int, default=10)
    args = parser.parse_args()
    found = [r for r in runs.find_runs([args.runs]) if r.record.finished]
    first = [r for r in found if int(r.seed) <= args.min_seeds]
    design = sequential_design([args.runs])
    by = args.by.split(",")
    final, fixed = (
        verdicts(found, by, args.metric, design[0] if design else None),
        verdicts(first, by, args.metric, None),
    )
    rows = len(final)
    grids = f"{rows * args.min_seeds} at {args.min_seeds} seeds, {rows * args.max_seeds} at {args.max_seeds} seeds"
    print(f"jobs: {len(found)} adaptive; fixed grids: {grids} ({rows} rows)")
    changed = {k: (fixed.get(k), v) for k, v in final.items() if fixed.get(k) != v}
    print(f"verdicts that differ between the fixed {args.min_seeds}-seed round and the final: {len(changed)} of {rows}")
    for key, (before, after) in sorted(changed.items()):
        print(f"  {key}: {before} -> {after}")
    print(json.dumps({"final": Counter(final.values()), f"fixed_{args.min_seeds}": Counter(fixed.values())}))


if __name__ == "__main__":
    main()
