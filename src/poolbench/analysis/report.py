"""Rendering ablation tables: Markdown, CSV, LaTeX (booktabs), the verdict sentence, files, and a W&B summary run."""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path

from poolbench.analysis import plots
from poolbench.analysis.table import Table, row_label
from poolbench.analysis.tasks import Study

VERDICT_CELLS = {"best": "best", "equivalent": "tied (±{m})", "tied": "tied", "worse": "worse",
                 "clearly worse": "worse > {m}", "better": "better", "n/a": "n/a"}  # fmt: skip


def verdict_cell(table: Table, row, metric: str) -> str:
    verdict = row.verdict.get(metric)
    return VERDICT_CELLS[verdict.kind].format(m=f"{table.margin * 100:.2f}") if verdict else ""


def _cells(table: Table, pct: bool = True) -> tuple[list[str], list[list[str]], list[list[bool]]]:
    scale = 100 if pct else 1
    header = [*table.by, "seeds"]
    for m in table.metrics:
        header += [m, f"Δ {m} [95% CI]", "p", "verdict"]
    body, bold = [], []
    best = {m: table.best(m) for m in table.metrics}
    for row in table.rows:
        cells = [str(v) for v in row.key] + [str(len(row.seeds))]
        marks = [False] * len(cells)
        for m in table.metrics:
            mean, std, _ = row.stats.get(m, (math.nan, math.nan, 0))
            cells.append(f"{mean * scale:.2f} ± {std * scale:.2f}")
            marks.append(best[m] is row)
            comp = row.comparison.get(m)
            if row is table.ref:
                cells += ["(reference)", ""]
            elif comp is None:
                cells += ["n/a", ""]
            else:
                noise = " ~" if comp.within_noise else ""
                cells += [f"{comp.diff * scale:+.2f} [{comp.low * scale:+.2f}, {comp.high * scale:+.2f}]{noise}",
                          f"{comp.p_value:.3f}"]  # fmt: skip
            cells.append(verdict_cell(table, row, m))
            marks += [False, False, False]
        body.append(cells)
        bold.append(marks)
    return header, body, bold


def legend(table: Table) -> str:
    """What the table's numbers and words mean, under the table."""
    ref = row_label(table.by, table.ref.key) if table.ref else "none"
    if table.ci == "examples":
        how = ("paired bootstrap over test examples pooled over shared seeds: an interval for these trained models "
               "on this test set, which new seeds may move more")  # fmt: skip
    else:
        how = ("95% interval over seeds and test examples (paired by seed where the rows share seeds; Student t with "
               "Welch-Satterthwaite df)")  # fmt: skip
    k, m = max(len(table.rows) - 1, 0), f"{table.margin * 100:.2f}"
    return (f"Metrics in %, mean ± std over seeds; bold: best mean. Δ: difference to the reference ({ref}), {how}; "
            "~ marks an interval that contains 0 (within noise). Verdict: against the best row, Holm-adjusted over "
            f"the table's {k} comparisons; tied: cannot be told apart from the best; (±{m}): and within the "
            f"practical margin of it; worse > {m}: worse by more than the margin.")  # fmt: skip


def verdict_sentence(table: Table, metric: str) -> str:
    """The claim the table supports for ``metric``, in one sentence."""
    best = table.best(metric)
    if best is None or not any(row.verdict.get(metric) for row in table.rows):
        return f"{metric}: no verdict (no test predictions to compare)."
    m = f"{table.margin * 100:.2f}"
    groups: dict[str, list[str]] = {}
    for row in table.rows:
        if row is not best and metric in row.verdict:
            groups.setdefault(row.verdict[metric].kind, []).append(row_label(table.by, row.key))
    tied = groups.get("equivalent", []) + groups.get("tied", [])
    parts = [f"{metric}: {row_label(table.by, best.key)} has the best mean ({best.stats[metric][0] * 100:.2f})"]
    if tied:
        within = f", {len(groups['equivalent'])} of them within ±{m} points" if groups.get("equivalent") else ""
        parts.append(f"tied with it: {', '.join(tied)} ({len(tied)} row{'s' * (len(tied) != 1)}{within})")
    else:
        parts.append("no row is tied with it")
    if groups.get("worse"):
        parts.append(f"worse: {', '.join(groups['worse'])}")
    if groups.get("clearly worse"):
        parts.append(f"worse by more than {m} points: {', '.join(groups['clearly worse'])}")
    if groups.get("better"):
        parts.append(f"better than it by the paired comparison: {', '.join(groups['better'])}")
    return "; ".join(parts) + "."


def to_markdown(table: Table) -> str:
    header, body, bold = _cells(table)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for cells, marks in zip(body, bold, strict=True):
        lines.append("| " + " | ".join(f"**{c}**" if b else c for c, b in zip(cells, marks, strict=True)) + " |")
    lines += ["", legend(table), ""]
    lines += [f"- **Verdict.** {verdict_sentence(table, m)}" for m in table.metrics]
    lines += [""] if table.notes or table.problems else []
    lines += [f"- note: {n}" for n in table.notes]
    lines += [f"- not included (unfinished or failed): {p}" for p in table.problems]
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    header = (["task"] if table.task else []) + [*table.by, "seeds"]
    for m in table.metrics:
        header += [f"{m} {c}" for c in ("mean", "std", "n", "diff", "ci_low", "ci_high", "p", "verdict", "p_holm")]
    writer.writerow(header)
    for row in table.rows:
        cells = ([table.task] if table.task else []) + [*row.key, len(row.seeds)]
        for m in table.metrics:
            mean, std, n = row.stats.get(m, (math.nan, math.nan, 0))
            comp, verdict = row.comparison.get(m), row.verdict.get(m)
            cells += [mean, std, n, *([comp.diff, comp.low, comp.high, comp.p_value] if comp else [""] * 4)]
            p_holm = verdict.p_holm if verdict is not None and verdict.p_holm is not None else ""
            cells += [verdict.kind if verdict else "", p_holm]
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
        lines.append(" & ".join(r"\textbf{" + esc(c) + "}" if b else esc(c) for c, b in zip(cells, marks, strict=True))
                     + r" \\")  # fmt: skip
    return [*lines, r"\bottomrule", r"\end{tabular}"]


def to_latex(table: Table) -> str:
    header, body, bold = _cells(table)
    lines = latex_tabular(header, body, bold, len(table.by))
    lines += [f"% verdict: {verdict_sentence(table, m)}" for m in table.metrics]
    return "\n".join(lines) + "\n"


FORMATS = {"markdown": (to_markdown, "md"), "csv": (to_csv, "csv"), "latex": (to_latex, "tex")}


def ranking_cells(study: Study) -> tuple[list[str], list[list[str]]]:
    r = study.ranking
    header = [*study.tables[0].by, "mean rank", *(f"{t} ({r.metric})" for t in r.tasks)]
    order = sorted(range(len(r.rows)), key=lambda j: r.mean_ranks[j])
    body = [[*map(str, r.rows[j]), f"{r.mean_ranks[j]:.2f}", *(f"{r.means[t, j] * 100:.2f} ({r.ranks[t, j]:g})"
             for t in range(len(r.tasks)))] for j in order]  # fmt: skip
    return header, body


def ranking_sentence(study: Study) -> str:
    r = study.ranking
    p = "not computed (fewer than 3 rows)" if r.friedman_p is None else f"p = {r.friedman_p:.3g}"
    return (f"Across {len(r.tasks)} tasks ({', '.join(study.task_keys)}), rows ranked by {r.metric} within each task "
            f"(1 = best; in brackets); Friedman test that all rows rank alike: {p}. Critical-difference diagram "
            "(Nemenyi): cd.png.")  # fmt: skip


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


def write_outputs(study: Study, out_dir: Path, fmt: str = "markdown") -> dict[str, Path]:
    """The tables in ``fmt`` plus bar charts and confusion matrices (one per task) and, across tasks, the
    critical-difference diagram, atomically, into ``out_dir``."""
    from poolbench.record import atomic_write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    written = {"table": out_dir / f"table.{FORMATS[fmt][1]}"}
    atomic_write_text(written["table"], render_study(study, fmt))
    for table in study.tables:
        suffix = "" if len(study.tables) == 1 else "-" + re.sub(r"[^\w.=-]+", "_", table.task or "")
        written[f"bars{suffix}"] = plots.plot_bars(table, out_dir / f"metrics{suffix}.png")
        written[f"confusion{suffix}"] = plots.plot_confusions(table, out_dir / f"confusion{suffix}.png")
    if study.ranking is not None:
        written["cd"] = plots.plot_critical_difference(study.ranking, out_dir / "cd.png")
    return written


def log_to_wandb(study: Study, written: dict[str, Path], project: str = "poolbench", mode: str | None = None,
                 tables: dict | None = None) -> str:  # fmt: skip
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
    config = {"by": blocks[0].by, "metrics": blocks[0].metrics, "groups": groups, "ci": blocks[0].ci,
              "margin": blocks[0].margin, "verdicts": verdicts}  # fmt: skip
    group = groups[0] if len(groups) == 1 else None
    return tracking.log_table(header, body, images, config, group, project, mode, tables)
