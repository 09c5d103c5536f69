"""Rendering an ablation ``Table``: Markdown, CSV, LaTeX (booktabs), plots, and a W&B summary run."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from poolbench.analysis.table import Table, row_label


def _cells(table: Table, pct: bool = True) -> tuple[list[str], list[list[str]], list[list[bool]]]:
    scale = 100 if pct else 1
    header = [*table.by, "seeds"]
    for m in table.metrics:
        header += [m, f"Δ {m} [95% CI]", "p"]
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
            marks += [False, False]
        body.append(cells)
        bold.append(marks)
    return header, body, bold


def to_markdown(table: Table) -> str:
    header, body, bold = _cells(table)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for cells, marks in zip(body, bold, strict=True):
        lines.append("| " + " | ".join(f"**{c}**" if b else c for c, b in zip(cells, marks, strict=True)) + " |")
    lines.append("")
    ref = row_label(table.by, table.ref.key) if table.ref else "none"
    lines.append(
        f"Metrics in %, mean ± std over seeds; bold: best mean. Δ: difference to the reference ({ref}), "
        "paired bootstrap over test examples pooled over shared seeds; ~ marks a 95% CI that contains 0 "
        "(within noise)."
    )
    lines += [f"- note: {n}" for n in table.notes]
    lines += [f"- not included (unfinished or failed): {p}" for p in table.problems]
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    header = [*table.by, "seeds"]
    for m in table.metrics:
        header += [f"{m} mean", f"{m} std", f"{m} n", f"{m} diff", f"{m} ci_low", f"{m} ci_high", f"{m} p"]
    writer.writerow(header)
    for row in table.rows:
        cells = [*row.key, len(row.seeds)]
        for m in table.metrics:
            mean, std, n = row.stats.get(m, (math.nan, math.nan, 0))
            comp = row.comparison.get(m)
            extra = [comp.diff, comp.low, comp.high, comp.p_value] if comp else ["", "", "", ""]
            cells += [mean, std, n, *extra]
        writer.writerow(cells)
    return buf.getvalue()


def to_latex(table: Table) -> str:
    header, body, bold = _cells(table)

    def esc(text: str) -> str:
        for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#")):
            text = text.replace(a, b)
        return text.replace("±", r"$\pm$").replace("Δ", r"$\Delta$").replace("~", r"$\sim$")

    lines = [r"\begin{tabular}{" + "l" * len(table.by) + "r" * (len(header) - len(table.by)) + "}", r"\toprule"]
    lines.append(" & ".join(esc(h) for h in header) + r" \\")
    lines.append(r"\midrule")
    for cells, marks in zip(body, bold, strict=True):
        lines.append(
            " & ".join(r"\textbf{" + esc(c) + "}" if b else esc(c) for c, b in zip(cells, marks, strict=True)) + r" \\"
        )
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


FORMATS = {"markdown": (to_markdown, "md"), "csv": (to_csv, "csv"), "latex": (to_latex, "tex")}


# --- plots ---------------------------------------------------------------------------------------------
def plot_bars(table: Table, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [" / ".join(map(str, r.key)) or "all runs" for r in table.rows]  # values only: short ticks
    fig, axes = plt.subplots(1, len(table.metrics), figsize=(4 + 1.2 * len(labels), 4), squeeze=False)
    for ax, m in zip(axes[0], table.metrics, strict=True):
        means = [r.stats.get(m, (math.nan,))[0] * 100 for r in table.rows]
        stds = [r.stats.get(m, (0, 0))[1] * 100 for r in table.rows]
        ax.bar(range(len(labels)), means, yerr=stds, capsize=4, color="#4c72b0")
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        ax.set_xlabel(" / ".join(table.by))
        ax.set_ylabel(f"{m} (%)")
        low = min(v - s for v, s in zip(means, stds, strict=True))
        ax.set_ylim(max(0, low - 5), None)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_confusions(table: Table, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(table.rows), figsize=(3.2 * len(table.rows), 3.4), squeeze=False)
    for ax, row in zip(axes[0], table.rows, strict=True):
        cm = np.sum([r.record.confusion_matrix["rows_true_cols_pred"] for r in row.runs], axis=0)
        names = row.runs[0].record.label_names
        ax.imshow(cm / np.maximum(cm.sum(1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
        for i in range(len(names)):
            for j in range(len(names)):
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_title(" / ".join(map(str, row.key)) or "all runs", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_outputs(table: Table, out_dir: Path, fmt: str = "markdown") -> dict[str, Path]:
    """The table in ``fmt`` plus the bar chart and confusion matrices, atomically, into ``out_dir``."""
    from poolbench.record import atomic_write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    render, ext = FORMATS[fmt]
    written = {"table": out_dir / f"table.{ext}"}
    atomic_write_text(written["table"], render(table))
    written["bars"] = plot_bars(table, out_dir / "metrics.png")
    written["confusion"] = plot_confusions(table, out_dir / "confusion.png")
    return written


def log_to_wandb(table: Table, written: dict[str, Path], project: str = "poolbench", mode: str | None = None) -> str:
    """Log the table and its plots to a summary run in the sweep's W&B group; return its id.

    The group is the one the sweep's runs were logged under (their records say it), so the summary sits next
    to them in the W&B UI. Works offline too (then ``wandb sync`` it like any run).
    """
    from poolbench import tracking

    groups = sorted({r.record.group for row in table.rows for r in row.runs if r.record.group})
    header, body, _ = _cells(table)
    images = {"metrics": written["bars"], "confusion": written["confusion"]}
    config = {"by": table.by, "metrics": table.metrics, "groups": groups}
    return tracking.log_table(header, body, images, config, groups[0] if len(groups) == 1 else None, project, mode)
