"""The ``poolbench`` command (also ``python -m poolbench``): every sub-command's arguments, in one place.

poolbench table RUN_FOLDER... [options]     ablation table from runs (or --wandb ENTITY/PROJECT)
poolbench plan RUN_FOLDER... --effect 1     what more seeds would buy: power, equivalence floor, adaptive jobs
poolbench simulate [--full]                 how often the verdicts err: regimes x designs, simulated
poolbench archive SWEEP DEST                a sweep's records without texts, to commit
poolbench sync SWEEP_OR_RUN                 upload its offline W&B runs (wraps `wandb sync`)
poolbench explain RUN_OR_CKPT "text"...     token weights of attention poolers, scalar-mix layer weights
poolbench inspect MODEL                     what a Hugging Face model's own classification head pools

Each command imports only what it needs: ``table`` and ``archive`` never load torch.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path


def table_command(argv: list[str] | None = None) -> int:
    from poolbench.analysis import decide, report, runs, tasks
    from poolbench.analysis import table as tables

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
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples of the test examples")
    parser.add_argument("--no-figures", action="store_true", help="the table only: no bar charts, confusion matrices")
    parser.add_argument(
        "--ci",
        choices=["seeds", "examples"],
        default="seeds",
        help="what the intervals account for: seeds and "
        "test examples (default: what a rerun would bring), or test examples only (these trained models)",
    )
    parser.add_argument("--margin", type=float, default=0.5, help="practical margin of the verdicts, in points")
    parser.add_argument("--primary", help="the metric that ranks rows across tasks (default: the last metric)")
    parser.add_argument(
        "--best-by",
        metavar="METRIC",
        help="per row, only the runs of the setting with the best mean METRIC "
        "(e.g. val/f1_macro over an Optuna search's trials)",
    )
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
        found = runs.find_runs(args.paths) if args.paths else runs.find_wandb_runs(args.wandb, args.group)
        design = sequential_design(args.paths)
        if design is not None:
            print(f"verdicts of the adaptive-seeds design in {design[1]}: {design[0]}")
        study = tasks.build_study(
            found,
            by=args.by.split(",") if args.by else None,
            primary=args.primary,
            metrics=args.metric or tables.DEFAULT_METRICS,
            ref=args.ref,
            n_boot=args.bootstrap,
            best_by=args.best_by,
            ci=args.ci,
            margin=decide.fraction(args.margin),
            design=design[0] if design else None,
        )
    except (FileNotFoundError, ValueError) as err:  # a RecordError (unreadable results.json) is a ValueError
        print(f"poolbench table: {err}", file=sys.stderr)
        return 2
    # default: next to the runs; for W&B runs, tables/<group or project>
    wandb_out = Path("tables", re.sub(r"[^\w.-]+", "_", args.group or args.wandb or ""))
    out = args.out or (args.paths[0] if args.paths else wandb_out)
    written = report.write_outputs(study, Path(out), args.format, figures=not args.no_figures)
    print(written["table"].read_text())
    print("wrote " + ", ".join(str(p) for p in written.values()))
    if args.log_wandb:
        run_id = report.log_to_wandb(study, written, project=args.project)
        print(f"logged to W&B run {run_id} (project {args.project})")
    return 0


def sequential_design(paths: list[str]):
    """(the ``sequential.Design``, its file) when a folder is an adaptive-seeds sweep whose decisions.jsonl names its
    design; the table then gives that design's verdicts."""
    from poolbench.analysis.sequential import Design

    for path in paths:
        file = Path(path) / "decisions.jsonl"
        if file.is_file():
            first = json.loads(file.read_text().splitlines()[0])
            if "design" in first:
                return Design(**first["design"]), file
    return None


def plan_command(argv: list[str] | None = None) -> int:
    from poolbench.analysis import plan, runs

    parser = argparse.ArgumentParser(prog="poolbench plan", description=plan.__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", help="run or sweep folders of one task (a pilot sweep, a study)")
    parser.add_argument("--effect", type=float, default=1.0, help="the difference to detect, in points")
    parser.add_argument("--max-seeds", type=int, default=10)
    parser.add_argument("--margin", type=float, default=0.5, help="practical margin, in points")
    parser.add_argument("--metric", default="test/acc")
    parser.add_argument("--by", help="comma-separated row keys (default: what varies across the runs but seed)")
    parser.add_argument("--studies", type=int, default=200, help="simulated studies per number of seeds")
    args = parser.parse_args(argv)
    try:
        fitted = plan.fit(runs.find_runs(args.paths), args.metric, args.by.split(",") if args.by else None)
    except (FileNotFoundError, ValueError) as err:
        print(f"poolbench plan: {err}", file=sys.stderr)
        return 2
    found = plan.plan(fitted, args.effect, args.max_seeds, args.margin, studies=args.studies)
    print(plan.format_plan(fitted, found))
    return 0


def simulate_command(argv: list[str] | None = None) -> int:
    from poolbench.run import designs

    return designs.main(argv)


def archive_command(argv: list[str] | None = None) -> int:
    """Copy a sweep's records into a small folder that can be committed: results.json and the test predictions
    without the texts (data sets' texts stay out of repositories), and an adaptive sweep's decisions.jsonl.
    `poolbench table` reads the copy."""
    from poolbench import record

    parser = argparse.ArgumentParser(prog="poolbench archive", description=archive_command.__doc__)
    parser.add_argument("source", help="a run or sweep folder")
    parser.add_argument("dest", help="where the copy goes (e.g. experiments/<study>/runs)")
    args = parser.parse_args(argv)
    source, dest = Path(args.source), Path(args.dest)
    try:
        results = record.find([source])
    except FileNotFoundError as err:
        print(f"poolbench archive: {err}", file=sys.stderr)
        return 2
    if not results:
        print(f"poolbench archive: no results.json under {source}", file=sys.stderr)
        return 2
    for file in results:
        record.copy_records(file.parent, dest / file.parent.relative_to(source))
    if (source / "decisions.jsonl").is_file():  # an adaptive-seeds sweep: its design, so the table gives its verdicts
        record.atomic_write_text(dest / "decisions.jsonl", (source / "decisions.jsonl").read_text())
    print(f"archived {len(results)} run(s) from {source} into {dest}")
    return 0


def sync_command(argv: list[str] | None = None) -> int:
    """Upload the offline W&B runs of a sweep (SWEEP/wandb/offline-run-*) or a run folder, with `wandb sync`."""
    import shutil
    import subprocess

    from poolbench import tracking

    parser = argparse.ArgumentParser(prog="poolbench sync", description=sync_command.__doc__)
    parser.add_argument("folder", help="a sweep folder (multirun/DATE/TIME-ID) or a run folder")
    parser.add_argument("--dry-run", action="store_true", help="say what would be uploaded, upload nothing")
    args = parser.parse_args(argv)
    runs = tracking.offline_runs(Path(args.folder))
    if not runs:
        print(f"poolbench sync: no offline W&B runs under {args.folder} (wandb/offline-run-*)", file=sys.stderr)
        return 2
    command = [shutil.which("wandb") or str(Path(sys.executable).parent / "wandb"), "sync", *map(str, runs)]
    print(f"{len(runs)} offline run(s) under {args.folder}:\n  " + "\n  ".join(p.name for p in runs))
    if args.dry_run:
        return 0
    done = subprocess.run(command)
    print(f"wandb sync: {'uploaded' if done.returncode == 0 else 'failed, exit status ' + str(done.returncode)}")
    return done.returncode


def explain_command(argv: list[str] | None = None) -> int:
    from poolbench.analysis import explain

    parser = argparse.ArgumentParser(prog="poolbench explain", description=explain.__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a run folder (its best checkpoint is used) or a .ckpt inside one")
    parser.add_argument("texts", nargs="+", help="text(s) to explain")
    parser.add_argument("--png", help="where to write the plot (default: explain.png in the current folder)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    try:
        png = Path(args.png or "explain.png")
        explanations, layers, written = explain.explain_to_files(args.checkpoint, args.texts, png)
    except (FileNotFoundError, ValueError) as err:
        print(f"poolbench explain: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"explanations": [e.to_dict() for e in explanations], "layer_weights": layers}, indent=2))
        return 0
    for e in explanations:
        print(explain.format_explanation(e) + "\n")
    if layers is not None:
        print(explain.format_layer_weights(layers) + "\n")
    print("wrote " + ", ".join(map(str, written)))
    return 0


def inspect_command(argv: list[str] | None = None) -> int:
    from poolbench.analysis import inspect

    parser = argparse.ArgumentParser(prog="poolbench inspect", description=inspect.__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a Hugging Face model folder or hub name")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    try:
        report = inspect.inspect_model(args.model)
    except (OSError, ValueError) as err:
        print(f"poolbench inspect: cannot read a config for {args.model!r}: {err}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_dict(), indent=2) if args.json else inspect.format_report(report))
    return 0


COMMANDS = {
    "table": table_command,
    "plan": plan_command,
    "simulate": simulate_command,
    "archive": archive_command,
    "sync": sync_command,
    "explain": explain_command,
    "inspect": inspect_command,
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: poolbench {{{','.join(COMMANDS)}}} ...", file=sys.stderr)
        return 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
