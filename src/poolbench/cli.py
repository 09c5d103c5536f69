"""The ``poolbench`` command.

poolbench table RUN_FOLDER... [options]     ablation table from runs (or --wandb ENTITY/PROJECT)
poolbench archive SWEEP DEST                a sweep's records without texts, to commit
poolbench explain RUN_OR_CKPT "text"...     token weights of attention poolers, scalar-mix layer weights
poolbench inspect MODEL                     what a Hugging Face model's own classification head pools
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path


def table_command(argv: list[str] | None = None) -> int:
    from poolbench import report
    from poolbench import table as tables

    parser = argparse.ArgumentParser(
        prog="poolbench table",
        description="Aggregate run folders (a sweep, several sweeps, nested) into an ablation table.",
    )
    parser.add_argument("paths", nargs="*", help="run or sweep folders (searched for results.json)")
    parser.add_argument("--wandb", metavar="ENTITY/PROJECT", help="read the runs from W&B instead (wandb.Api)")
    parser.add_argument("--group", help="with --wandb: only the runs of this W&B group (one sweep)")
    parser.add_argument("--by", help="comma-separated row keys (default: what varies across the runs but seed)")
    parser.add_argument("--metric", action="append", help="metric column(s), default test/acc and test/f1_macro")
    parser.add_argument("--ref", help="reference row for the comparisons, e.g. pooling=cls (default: the first)")
    parser.add_argument("--format", choices=sorted(report.FORMATS), default="markdown")
    parser.add_argument("--out", help="folder for table, bar chart and confusion matrices (default: first path)")
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument(
        "--best-by", metavar="METRIC", help="per row, only the runs of the setting with the best mean METRIC "
        "(e.g. val/f1_macro over an Optuna search's trials)",
    )  # fmt: skip
    parser.add_argument(
        "--log-wandb", action="store_true", help="also log the table and plots to a summary run of the sweep's group"
    )
    parser.add_argument("--project", default="poolbench", help="W&B project for --log-wandb")
    args = parser.parse_args(argv)
    if bool(args.paths) == bool(args.wandb):
        parser.error("give run folders or --wandb ENTITY/PROJECT (one of the two)")
    if args.group and not args.wandb:
        parser.error("--group needs --wandb")
    try:
        runs = tables.find_runs(args.paths) if args.paths else _wandb_runs(args.wandb, args.group)
        table = tables.build_table(
            runs,
            by=args.by.split(",") if args.by else None,
            metrics=args.metric or tables.DEFAULT_METRICS,
            ref=args.ref,
            n_boot=args.bootstrap,
            best_by=args.best_by,
        )
    except (FileNotFoundError, ValueError) as err:
        print(f"poolbench table: {err}", file=sys.stderr)
        return 2
    # default: next to the runs; for W&B runs, tables/<group or project>
    wandb_out = Path("tables", re.sub(r"[^\w.-]+", "_", args.group or args.wandb or ""))
    out = args.out or (args.paths[0] if args.paths else wandb_out)
    written = report.write_outputs(table, Path(out), args.format)
    print(written["table"].read_text())
    print("wrote " + ", ".join(str(p) for p in written.values()))
    if args.log_wandb:
        run_id = report.log_to_wandb(table, written, project=args.project)
        print(f"logged to W&B run {run_id} (project {args.project})")
    return 0


def _wandb_runs(path: str, group: str | None):
    from poolbench import table as tables

    if path.count("/") != 1:
        raise ValueError(f"--wandb {path}: expected ENTITY/PROJECT")
    try:
        return tables.find_wandb_runs(path, group)
    except (FileNotFoundError, ValueError):
        raise
    except Exception as err:  # no key, no network, no such project: say which
        raise ValueError(f"could not read runs from W&B {path}: {type(err).__name__}: {err}") from err


def archive_command(argv: list[str] | None = None) -> int:
    """Copy a sweep's records into a small folder that can be committed: results.json and the test predictions
    without the texts (data sets' texts stay out of repositories). `poolbench table` reads the copy."""
    from poolbench import record

    parser = argparse.ArgumentParser(prog="poolbench archive", description=archive_command.__doc__)
    parser.add_argument("source", help="a run or sweep folder")
    parser.add_argument("dest", help="where the copy goes (e.g. experiments/<study>/runs)")
    args = parser.parse_args(argv)
    source, dest = Path(args.source), Path(args.dest)
    # skipping the copies each W&B run folder holds
    results = sorted(f for f in source.rglob("results.json") if "wandb" not in f.relative_to(source).parts)
    if not results:
        print(f"poolbench archive: no results.json under {source}", file=sys.stderr)
        return 2
    for file in results:
        record.copy_records(file.parent, dest / file.parent.relative_to(source))
    print(f"archived {len(results)} run(s) from {source} into {dest}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: poolbench {{{','.join(COMMANDS)}}} ...", file=sys.stderr)
        return 2
    import importlib

    module, function = COMMANDS[argv[0]].split(":")
    # only the chosen command's imports: `poolbench table` and `archive` never load torch
    return getattr(importlib.import_module(module), function)(argv[1:])


COMMANDS = {
    "table": "poolbench.cli:table_command",
    "archive": "poolbench.cli:archive_command",
    "explain": "poolbench.explain:explain_command",
    "inspect": "poolbench.heads:inspect_command",
}


if __name__ == "__main__":
    sys.exit(main())
