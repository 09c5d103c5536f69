"""Rendering ablation tables: Markdown, CSV, LaTeX (booktabs), the verdict sentence, files, and a W&B summary run."""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path

from poolbench.analysis import decide, maxt, plots
from poolbench.analysis.decide import Kind
from poolbench.analysis.table import Table, row_label
from poolbench.analysis.tasks import Study


def signed(x: float) -> str:
    """``x`` to two decimals with its sign. A value that rounds to zero prints ``+0.00``, whatever the sign of its
    last bits (two rows with the same mean differ by +-1e-17 in one BLAS kernel, by 0 in another)."""
    text = f"{x:+.2f}"
    return "+" + text[1:] if float(text) == 0 else text


def exact(x: float, decimals: int = 6) -> float:
    """A number as CSV writes it: rounded far below what a table prints, but far above the last bits that differ
    between machines (and never -0.0)."""
    return round(x, decimals) + 0.0


def verdict_cell(table: Table, row, metric: str) -> str:
    """The verdict, and beside it the simultaneous interval of the row minus the best (points)."""
    verdict = row.verdict.get(metric)
    if verdict is None:
        return ""
    cell = verdict.kind.cell(decide.points(table.margin))
    if verdict.kind is Kind.IDENTICAL and row.twin is not None:
        return f"{cell} to {row_label(table.by, row.twin.key)}"
    if verdict.interval is not None:
        low, high = (decide.points(v) for v in verdict.interval)
        cell += f" [{signed(low)}, {signed(high)}]"
    return cell


def _one_seed(row, metric: str) -> bool:
    verdict = row.verdict.get(metric)
    return verdict is not None and verdict.kind is Kind.ONE_SEED


def _cells(table: Table) -> tuple[list[str], list[list[str]], list[list[bool]]]:
    scale = 100  # points
    header = [*table.by, "seeds"]
    for m in table.metrics:
        header += [m, f"Δ {m} [95% CI]", "p", "verdict"]
    body, bold = [], []
    best = {m: table.best(m) for m in table.metrics}
    for row in table.rows:
        cells = [str(v) for v in row.key] + [str(len(row.seeds))]
        marks = [False] * len(cells)
        for m in table.metrics:
            mean, std, n = row.stats.get(m, (math.nan, math.nan, 0))
            # one seed: no spread to show
            cells.append(f"{mean * scale:.2f}" + ("" if n < 2 else f" ± {std * scale:.2f}"))
            marks.append(best[m] is row)
            comp = row.comparison.get(m)
            if row is table.ref:
                cells += ["(reference)", ""]
            elif comp is None:
                cells += ["n/a", ""]
            else:
                noise = " ~" if comp.within_noise else ""
                only = " (examples only)" if comp.method == "examples" and table.ci != "examples" else ""
                interval = f"[{signed(comp.low * scale)}, {signed(comp.high * scale)}]"
                cells += [f"{signed(comp.diff * scale)} {interval}{noise}{only}", f"{comp.p_value:.3f}"]
            cells.append(verdict_cell(table, row, m))
            marks += [False, False, False]
        body.append(cells)
        bold.append(marks)
    return header, body, bold


def legend(table: Table) -> str:
    """What the table's numbers and words mean, under the table."""
    ref = row_label(table.by, table.ref.key) if table.ref else "none"
    if table.ci == "examples":
        how = (
            "paired bootstrap over test examples pooled over shared seeds: an interval for these trained models "
            "on this test set, which new seeds may move more"
        )
    else:
        how = (
            "95% interval over seeds and test examples, one comparison alone (seed spread pooled over the rows, "
            "Student t on its degrees of freedom)"
        )
    m = f"{decide.points(table.margin):.2f}"
    text = (
        f"Metrics in %, mean ± std over seeds; bold: the best mean. Δ: difference to the reference ({ref}), {how}; "
        "~ marks an interval that contains 0. Verdict: against the best row, all pairs of rows with two seeds or "
        f"more in one family (step-down max-T); tied (±{m}): shown within the margin of the best (equivalence "
        f"test); worse: shown below the best; worse > {m}: by more than the margin; inconclusive: neither "
        "shown different nor shown within the margin. Beside each verdict: the interval of the row minus the best, "
        "simultaneous over all pairs at the verdict's level."
    )
    if any(row.twin is not None for row in table.rows):
        text += (
            " identical predictions to X: the row's models predict exactly as X's, seed for seed, on every test "
            "text: it is X under another name and stays out of the verdicts."
        )
    if any(_one_seed(row, metric) for row in table.rows for metric in table.metrics):
        text += (
            " 1 seed: examples only: a row with one seed has no seed spread; its Δ resamples test examples only "
            "and it gets no verdict."
        )
    if table.design is not None:
        d = table.design
        text += (
            f" Sequential design (adaptive seeds, {d.min_seeds}..{d.max_seeds} seeds, {d.spending} alpha "
            "spending): each verdict was made at the look named in the notes, with that look's share of alpha."
        )
    return text


def floor_line(table: Table, metric: str) -> str | None:
    """The equivalence floor of ``metric`` and, when the margin is below it, the warning."""
    found = table.floor(metric)
    if found is None:
        return None
    low, high = (decide.points(v) for v in found)
    span = f"{low:.2f}" if abs(high - low) < 0.005 else f"{low:.2f}-{high:.2f}"
    line = (
        f"{metric}: equivalence floor ±{span} points: the smallest margin these test examples can confirm against "
        "the best, however many seeds are run"
    )
    if decide.points(table.margin) < low:
        line += (
            f". Warning: the margin ±{decide.points(table.margin):.2f} is below it: no row can be shown tied; "
            "use a larger --margin or a larger test set"
        )
    return line + "."


def verdict_sentence(table: Table, metric: str) -> str:
    """The claim the table supports for ``metric``, in one sentence."""
    best = table.best(metric)
    if best is None or not any(r.verdict.get(metric) and r.verdict[metric].kind is Kind.BEST for r in table.rows):
        own = [r for r in table.rows if r.twin is None]  # a twin is its twin's row under another name
        if own and all(_one_seed(r, metric) for r in own):
            return (
                f"{metric}: no verdict: every row has one seed, so no seed spread is known (the Δ column is over "
                "test examples only); run two seeds or more (seed=1,2,3) for verdicts."
            )
        return f"{metric}: no verdict (fewer than two rows with two seeds or more, or no test predictions)."
    m = f"{decide.points(table.margin):.2f}"
    groups: dict[Kind, list[str]] = {}
    for row in table.rows:
        if row is not best and metric in row.verdict:
            groups.setdefault(row.verdict[metric].kind, []).append(row_label(table.by, row.key))
    parts = [f"{metric}: {row_label(table.by, best.key)} has the best mean ({best.stats[metric][0] * 100:.2f})"]
    for kind, words in (
        (Kind.TIED, f"tied with it (within ±{m} points)"),
        (Kind.WORSE, "worse"),
        (Kind.CLEARLY_WORSE, f"worse by more than {m} points"),
        (Kind.INCONCLUSIVE, "inconclusive (not shown different, not shown within the margin)"),
        (Kind.ONE_SEED, "not compared (one seed)"),
        (Kind.IDENTICAL, "the same predictions as another row (one model, two names; see the notes)"),
    ):
        if groups.get(kind):
            parts.append(f"{words}: {', '.join(groups[kind])}")
    if not any(groups.get(k) for k in (Kind.WORSE, Kind.CLEARLY_WORSE)):
        parts.append("no row is shown worse")
    return "; ".join(parts) + "."


def _decided_at(table: Table) -> list[str]:
    if table.design is None:
        return []
    notes = []
    for m in table.metrics:
        at = [
            f"{row_label(table.by, r.key)}: {r.verdict[m].kind.value} at {r.verdict[m].at}"
            for r in table.rows
            if r.verdict.get(m) is not None and r.verdict[m].at
        ]
        if at:
            notes.append(f"{m} decided at: " + "; ".join(at))
    return notes


def precision_line(table: Table, metric: str) -> str | None:
    """Only when the integration stopped short of the printed digits (``maxt.MOST`` directions): the error it
    reached. Otherwise every interval, floor and adjusted p-value is within half a unit of its last digit."""
    found = table.precision.get(metric)
    if found is None or found.within_print():
        return None
    return (
        f"{metric}: numerical error after {found.directions * maxt.REPLICATES:,} directions: intervals "
        f"±{decide.points(found.interval):.3f}, floors ±{decide.points(found.floor):.3f} points, adjusted p-values "
        f"{found.p_adjusted:.1f} half-units of their last digit: a last digit may be off by one."
    )


def under_table(table: Table) -> list[str]:
    """The lines every format prints under a table: what is controlled, the floors, the verdicts, and the numerical
    error where it is above half a unit of a printed digit."""
    lines = [decide.controlled(table.alpha, table.margin)]
    lines += [line for m in table.metrics if (line := floor_line(table, m))]
    lines += [line for m in table.metrics if (line := precision_line(table, m))]
    return lines


def to_markdown(table: Table) -> str:
    header, body, bold = _cells(table)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for cells, marks in zip(body, bold, strict=True):
        lines.append("| " + " | ".join(f"**{c}**" if b else c for c, b in zip(cells, marks, strict=True)) + " |")
    lines += ["", legend(table), ""]
    lines += [f"- **Verdict.** {verdict_sentence(table, m)}" for m in table.metrics]
    lines += [f"- {line}" for line in under_table(table)]
    notes = table.notes + _decided_at(table)
    lines += [""] if notes or table.problems else []
    lines += [f"- note: {n}" for n in notes]
    lines += [f"- not included (unfinished or failed): {p}" for p in table.problems]
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    header = (["task"] if table.task else []) + [*table.by, "seeds"]
    for m in table.metrics:
        header += [
            f"{m} {c}"
            for c in (
                "mean",
                "std",
                "n",
                "diff",
                "ci_low",
                "ci_high",
                "p",
                "ci_method",
                "verdict",
                "p_adjusted",
                "floor",
            )
        ]
    writer.writerow(header)
    for row in table.rows:
        cells = ([table.task] if table.task else []) + [*row.key, len(row.seeds)]
        for m in table.metrics:
            mean, std, n = row.stats.get(m, (math.nan, math.nan, 0))
            comp, verdict = row.comparison.get(m), row.verdict.get(m)
            method = ("examples only" if comp.method == "examples" else "seeds and examples") if comp else ""
            cells += [exact(mean), exact(std) if n > 1 else "", n]
            cells += [*([exact(v) for v in (comp.diff, comp.low, comp.high, comp.p_value)] if comp else [""] * 4)]
            cells.append(method)
            # the numbers integrated numerically: to the digits their error allows (decide.p_text, 2 decimals of points)
            p_adjusted = (
                decide.p_text(verdict.p_adjusted) if verdict is not None and verdict.p_adjusted is not None else ""
            )
            floor = exact(verdict.floor, 4) if verdict is not None and verdict.floor is not None else ""
            cells += [verdict.kind.value if verdict else "", p_adjusted, floor]
        writer.writerow(cells)
    return buf.getvalue()


def _latex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#")):
        text = text.replace(a, b)
    return text.replace("±", r"$\pm$").replace("Δ", r"$\Delta$").replace("~", r"$\sim$").replace(">", r"$>$")


def latex_tabular(header: list[str], body: list[list[str]], bold: list[list[bool]], left: int) -> list[str]:
    esc = _latex_escape
    lines = [r"\begin{tabular}{" + "l" * left + "r" * (len(header) - left) + "}", r"\toprule"]
    lines += [" & ".join(esc(h) for h in header) + r" \\", r"\midrule"]
    for cells, marks in zip(body, bold, strict=True):
        lines.append(
            " & ".join(r"\textbf{" + esc(c) + "}" if b else esc(c) for c, b in zip(cells, marks, strict=True)) + r" \\"
        )
    return [*lines, r"\bottomrule", r"\end{tabular}"]


def to_latex(table: Table) -> str:
    header, body, bold = _cells(table)
    lines = latex_tabular(header, body, bold, len(table.by))
    lines += [f"% verdict: {verdict_sentence(table, m)}" for m in table.metrics]
    lines += [f"% {line}" for line in under_table(table)]
    lines += [f"% {legend(table)}"]
    return "\n".join(lines) + "\n"


FORMATS = {"markdown": (to_markdown, "md"), "csv": (to_csv, "csv"), "latex": (to_latex, "tex")}


def ranking_cells(study: Study) -> tuple[list[str], list[list[str]]]:
    r = study.ranking
    header = [
        *study.tables[0].by,
        "mean rank",
        *(f"{t} ({r.metric})" for t in r.tasks),
        "worse in (tasks)",
        "Wilcoxon p (Holm)",
    ]
    order = sorted(range(len(r.rows)), key=lambda j: r.mean_ranks[j])

    def wilcoxon(key) -> str:
        return "(best rank)" if key not in r.wilcoxon else f"{r.wilcoxon[key][1]:.3f}"

    body = [
        [
            *map(str, r.rows[j]),
            f"{r.mean_ranks[j]:.2f}",
            *(f"{r.means[t, j] * 100:.2f} ({r.ranks[t, j]:g})" for t in range(len(r.tasks))),
            f"{r.worse_in.get(r.rows[j], 0)} of {len(r.tasks)}",
            wilcoxon(r.rows[j]),
        ]
        for j in order
    ]
    return header, body


def ranking_sentence(study: Study) -> str:
    r = study.ranking
    if r.friedman_p is None:
        omnibus = "Friedman test: not computed (fewer than 3 rows)"
    else:
        verdict = "rejects" if r.omnibus_rejects else "does not reject"
        omnibus = (
            f"Friedman test that all rows rank alike: p = {r.friedman_p:.3g}; Iman-Davenport F: "
            f"p = {r.iman_davenport_p:.3g}, which {verdict} at {r.alpha:g}"
        )
    cd = (
        "critical-difference diagram (Nemenyi): cd.png"
        if r.omnibus_rejects
        else "no critical-difference diagram: the omnibus test did not reject (cd.png says so)"
    )
    smallest = 2 * 0.5 ** len(r.tasks)
    return (
        f"Across {len(r.tasks)} tasks ({', '.join(study.task_keys)}), rows ranked by {r.metric} within each task "
        f"(1 = best; in brackets); {omnibus}; {cd}. Resampled: the per-task verdicts (worse in) resample seeds "
        "and test examples; Friedman, Iman-Davenport and the Wilcoxon signed-rank test against the best-ranked row "
        f"(Holm over the rows) resample tasks: with {len(r.tasks)} tasks its smallest possible p is "
        f"{smallest:.3g}."
    )


def render_study(study: Study, fmt: str) -> str:
    """The study in ``fmt``: its one table, or one block per task and the ranking across tasks."""
    render = FORMATS[fmt][0]
    if study.ranking is None and len(study.tables) == 1:
        return render(study.tables[0])
    if fmt == "csv":
        return "".join(render(t) if i == 0 else render(t).split("\n", 1)[1] for i, t in enumerate(study.tables))
    blocks = []
    for table in study.tables:
        title = f"task: {table.task}"
        blocks.append(f"## {title}\n\n{render(table)}" if fmt == "markdown" else f"% {title}\n{render(table)}")
    if study.ranking is not None:
        header, body = ranking_cells(study)
        if fmt == "markdown":
            lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(cells) + " |" for cells in body]
            blocks.append("## Across tasks\n\n" + "\n".join(lines) + "\n\n" + ranking_sentence(study) + "\n")
            blocks[-1] += "".join(f"- note: {n}\n" for n in study.ranking.notes)
        else:
            lines = latex_tabular(header, body, [[False] * len(header)] * len(body), len(study.tables[0].by))
            blocks.append("% across tasks\n" + "\n".join(lines) + f"\n% {ranking_sentence(study)}\n")
    return "\n".join(blocks)


def write_outputs(study: Study, out_dir: Path, fmt: str = "markdown", figures: bool = True) -> dict[str, Path]:
    """The tables in ``fmt`` plus (unless not ``figures``) bar charts and confusion matrices (one per task) and,
    across tasks, the critical-difference diagram, atomically, into ``out_dir``."""
    from poolbench.record import atomic_write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    written = {"table": out_dir / f"table.{FORMATS[fmt][1]}"}
    atomic_write_text(written["table"], render_study(study, fmt))
    if not figures:
        return written
    for table in study.tables:
        suffix = "" if len(study.tables) == 1 else "-" + re.sub(r"[^\w.=-]+", "_", table.task or "")
        written[f"bars{suffix}"] = plots.plot_bars(table, out_dir / f"metrics{suffix}.png")
        written[f"confusion{suffix}"] = plots.plot_confusions(table, out_dir / f"confusion{suffix}.png")
    if study.ranking is not None:
        written["cd"] = plots.plot_critical_difference(study.ranking, out_dir / "cd.png")
    return written


def log_to_wandb(
    study: Study,
    written: dict[str, Path],
    project: str = "poolbench",
    mode: str | None = None,
    tables: dict | None = None,
) -> str:
    """Log the tables, verdicts and plots to a summary run in the sweep's W&B group; return its id.

    The group is the one the sweep's runs were logged under (their records say it), so the summary sits next
    to them in the W&B UI. Works offline too (then ``wandb sync`` it like any run).
    """
    from poolbench import tracking

    blocks = study.tables
    groups = sorted({r.record.group for t in blocks for row in t.rows for r in row.runs if r.record.group})
    header, body = None, []
    for table in blocks:
        h, b, _ = _cells(table)
        header = (["task"] if table.task else []) + h
        body += [([table.task] if table.task else []) + cells for cells in b]
    images = {name.replace("bars", "metrics"): path for name, path in written.items() if path.suffix == ".png"}
    verdicts = [verdict_sentence(t, m) for t in blocks for m in t.metrics]
    config = {
        "by": blocks[0].by,
        "metrics": blocks[0].metrics,
        "groups": groups,
        "ci": blocks[0].ci,
        "margin": blocks[0].margin,
        "verdicts": verdicts,
        "controlled": under_table(blocks[0]),
    }
    group = groups[0] if len(groups) == 1 else None
    return tracking.log_table(header, body, images, config, group, project, mode, tables)
