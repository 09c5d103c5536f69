"""Ablation tables: exact aggregation, honest comparisons, every format, failed runs reported."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import clean_env, data_overrides, synthetic_rows, train_cli, wandb_summary, write_csv

from poolbench.analysis import report
from poolbench.analysis import table as tables
from poolbench.analysis.runs import find_runs, find_wandb_runs
from poolbench.analysis.stats import accuracy, compare_rows, holm, macro_f1
from poolbench.analysis.tasks import build_study
from poolbench.cli import main as cli

LABELS = ["neg", "pos"]


def write_run(
    folder: Path, pooling: str, seed: int, acc: float, preds: list[int], labels: list[int], status="finished"
):
    folder.mkdir(parents=True)
    results = {
        "status": status,
        "choices": {"pooling": pooling, "encoder": "tiny_bert"},
        "config": {"seed": seed, "pooling": {"_target_": pooling}, "model": {"lr": 1e-3}},
        "metrics": {"test/acc": acc, "test/f1_macro": acc - 0.1},
        "confusion_matrix": {"labels": LABELS, "rows_true_cols_pred": [[3, 1], [1, 3]]},
    }
    if status != "finished":
        results = {**results, "metrics": {}, "error": "RuntimeError: boom"}
    (folder / "results.json").write_text(json.dumps(results))
    lines = [json.dumps({"idx": i, "label": y, "pred": p}) for i, (y, p) in enumerate(zip(labels, preds, strict=True))]
    (folder / "test_predictions.jsonl").write_text("\n".join(lines) + "\n")


@pytest.fixture
def sweep(tmp_path) -> Path:
    """cls: acc 0.60/0.70/0.80 over seeds 1-3; mean: 0.90/0.90/0.93; one failed run."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400).tolist()
    for seed, (a_cls, a_mean) in enumerate([(0.6, 0.9), (0.7, 0.9), (0.8, 0.93)], start=1):
        weak = [y if rng.random() < 0.6 else 1 - y for y in labels]
        strong = [y if rng.random() < 0.95 else 1 - y for y in labels]
        write_run(tmp_path / "s" / f"cls{seed}", "cls", seed, a_cls, weak, labels)
        write_run(tmp_path / "s" / f"mean{seed}", "mean", seed, a_mean, strong, labels)
    write_run(tmp_path / "s" / "max1", "max", 1, 0.0, labels, labels, status="failed")
    return tmp_path / "s"


def test_aggregation_is_exact(sweep):
    table = tables.build_table(find_runs([sweep]), ref="pooling=cls", n_boot=200)
    assert table.by == ["pooling"]  # what varies, seed aside
    rows = {r.key: r for r in table.rows}
    mean, std, n = rows[("cls",)].stats["test/acc"]
    assert (mean, n) == (pytest.approx(0.7), 3) and std == pytest.approx(0.1)  # sample std (ddof=1)
    assert rows[("mean",)].stats["test/acc"][0] == pytest.approx(0.91)
    assert table.best("test/acc") is rows[("mean",)]
    assert table.problems == [f"{sweep / 'max1'}: failed (RuntimeError: boom)"]


def test_the_examples_only_bootstrap_on_known_answers():
    labels = np.array([0, 1] * 100)
    same = {1: labels.copy(), 2: 1 - labels}
    comp = compare_rows(labels, same, same, accuracy, 2, n_boot=300, method="examples")
    assert (comp.diff, comp.low, comp.high, comp.p_value) == (0.0, 0.0, 0.0, 1.0) and comp.within_noise
    worse = {1: np.where(np.arange(200) < 60, 1 - labels, labels)}  # 70% correct
    better = {1: labels.copy()}  # 100% correct
    comp = compare_rows(labels, worse, better, accuracy, 2, n_boot=500, method="examples")
    assert comp.diff == pytest.approx(0.3) and comp.low > 0.2 and comp.p_value < 0.01
    assert compare_rows(labels, worse, {7: better[1]}, accuracy, 2, method="examples") is None  # no shared seed


def test_the_seeds_interval_counts_the_seed_to_seed_spread():
    """Two rows whose seeds scatter: the interval over seeds and examples holds the seed spread (pooled over the rows,
    on its degrees of freedom) and the test-set part; the examples-only one ignores the scatter."""
    labels = np.array([0, 1] * 500)
    rng = np.random.default_rng(3)

    def model(acc: float) -> np.ndarray:
        return np.where(rng.random(1000) < acc, labels, 1 - labels)

    a = {s: model(0.80) for s in (1, 2, 3)}
    b = {1: model(0.84), 2: model(0.79), 3: model(0.83)}
    seeds = compare_rows(labels, a, b, accuracy, 2, n_boot=500)
    examples = compare_rows(labels, a, b, accuracy, 2, n_boot=500, method="examples")
    d = np.array([np.mean(b[s] == labels) - np.mean(a[s] == labels) for s in (1, 2, 3)])
    assert seeds.diff == pytest.approx(d.mean()) == pytest.approx(examples.diff)
    accs = [np.array([np.mean(row[s] == labels) for s in (1, 2, 3)]) for row in (a, b)]
    pooled = (np.var(accs[0], ddof=1) + np.var(accs[1], ddof=1)) / 2
    assert (
        seeds.df == pytest.approx(2, abs=0.1) and "pooled over 2 rows (two-way, df 2)" in seeds.pairing
    )  # two-way: 6 models - 2 rows - 3 seeds + 1
    assert unpaired_df(a, b, labels) == pytest.approx(4, abs=0.1)  # one-way: the rows share no seeds
    assert seeds.se**2 >= np.var(d, ddof=1) / 3 * 0.999  # at least the seed part of the paired differences
    assert seeds.high - seeds.low > 1.5 * (examples.high - examples.low)
    unpaired = compare_rows(labels, a, {s + 10: p for s, p in b.items()}, accuracy, 2, n_boot=500)
    assert unpaired.diff == pytest.approx(d.mean()) and unpaired.se**2 >= pooled * (1 / 3 + 1 / 3)
    one_seed = compare_rows(labels, {1: a[1]}, {1: b[1]}, accuracy, 2, n_boot=200)
    assert one_seed.method == "examples" and one_seed.pairing == "1 seed: examples only"


def unpaired_df(a: dict, b: dict, labels) -> int:
    return compare_rows(labels, a, {s + 10: p for s, p in b.items()}, accuracy, 2, n_boot=100).df


def test_holm_adjusts_step_down():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5]


def test_macro_f1_matches_a_hand_computation():
    labels, preds = np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 0])
    # class 0: tp1 fp1 fn1 -> 0.5; class 1: tp2 fp1 fn0 -> 0.8; class 2: tp0 fn1 -> 0
    assert macro_f1(labels, preds, 3) == pytest.approx((0.5 + 0.8 + 0.0) / 3)


def test_markdown_marks_the_best_and_says_what_is_noise(sweep):
    text = report.to_markdown(tables.build_table(find_runs([sweep]), n_boot=200))
    assert "| cls | 3 | 70.00 ± 10.00 | (reference) |" in text
    assert "**91.00 ± 1.73**" in text
    assert "not included (unfinished or failed)" in text and "max1" in text


def test_csv_round_trips_and_latex_is_booktabs(sweep):
    table = tables.build_table(find_runs([sweep]), n_boot=200)
    rows = list(csv.DictReader(io.StringIO(report.to_csv(table))))
    assert [r["pooling"] for r in rows] == ["cls", "mean"]
    assert float(rows[1]["test/acc mean"]) == pytest.approx(0.91) and rows[1]["test/acc n"] == "3"
    assert float(rows[1]["test/acc ci_low"]) <= float(rows[1]["test/acc diff"]) <= float(rows[1]["test/acc ci_high"])
    latex = report.to_latex(table)
    assert latex.startswith(r"\begin{tabular}{lrrrrrrrrr}") and r"\toprule" in latex and r"\bottomrule" in latex
    assert latex.count(r"\\") == 3 and r"\textbf{91.00 $\pm$ 1.73}" in latex and "test/f1\\_macro" in latex


def test_latex_rows_fit_the_column_spec(sweep):
    latex = report.to_latex(tables.build_table(find_runs([sweep]), n_boot=200))
    columns = len(latex.splitlines()[0].removeprefix(r"\begin{tabular}{").removesuffix("}"))
    body = [line for line in latex.splitlines() if line.endswith(r"\\")]
    assert body and all(line.count(" & ") == columns - 1 for line in body)
    tabular, *comments = latex.rstrip().split("\n% ")
    assert latex.count("{") == latex.count("}") and tabular.endswith(r"\end{tabular}")
    assert [c.split(":")[0] for c in comments][:2] == ["verdict", "verdict"]  # the claim, as comments for the text
    assert comments[2].startswith("Controlled: ")  # and what it controls


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_latex_compiles_in_a_minimal_document(sweep, tmp_path):
    latex = report.to_latex(tables.build_table(find_runs([sweep]), n_boot=200))
    doc = "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n" + latex + "\n\\end{document}\n"
    (tmp_path / "t.tex").write_text(doc)
    done = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and (tmp_path / "t.pdf").stat().st_size > 0, done.stdout[-2000:]


def test_cli_writes_table_and_plots(sweep, tmp_path, capsys):
    out = tmp_path / "report"
    assert cli(["table", str(sweep), "--format", "csv", "--out", str(out), "--ref", "pooling=mean"]) == 0
    assert (out / "table.csv").read_text().startswith("pooling,seeds,")
    for png in ("metrics.png", "confusion.png"):
        data = (out / png).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 1000
    assert cli(["table", str(tmp_path / "nothing-here")]) == 2
    assert "no such run folder" in capsys.readouterr().err


@pytest.mark.slow
def test_a_tiny_sweep_then_the_table(tmp_path, csv_data, cache_dir):
    env = clean_env(tmp_path, cache_dir)
    sweep = tmp_path / "sweep"
    args = ["-m", "pooling=cls,mean", "seed=1,2", "logger=none", *data_overrides(csv_data), f"hydra.sweep.dir={sweep}"]
    assert train_cli(args, env).returncode == 0
    done = subprocess.run(
        [sys.executable, "-m", "poolbench", "table", str(sweep)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| pooling | seeds |" in done.stdout and "| cls | 2 |" in done.stdout and "| mean | 2 |" in done.stdout
    assert (sweep / "table.md").exists() and (sweep / "metrics.png").exists()


def test_the_table_is_logged_to_wandb_as_a_summary_run(sweep, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    study = build_study(find_runs([sweep]), n_boot=100)
    written = report.write_outputs(study, tmp_path / "report")
    run_id = report.log_to_wandb(study, written)
    (run_dir,) = (tmp_path / "wandb").glob(f"offline-run-*-{run_id}")
    summary = wandb_summary(run_dir)
    assert summary["name"] == "ablation-table" and summary["state"] == "finished"
    assert {"ablation/table", "ablation/metrics", "ablation/confusion"} <= set(summary["summary"])
    assert any(v.startswith("test/acc: pooling=mean has the best mean") for v in summary["config"]["verdicts"])


def test_records_from_before_layer_pooling_count_as_the_last_layer(tmp_path):
    labels = [0, 1, 0, 1]
    write_run(tmp_path / "old" / "0", "cls", 1, 0.5, labels, labels)  # no `layers` choice in its record
    write_run(tmp_path / "new" / "0", "cls", 2, 0.7, labels, labels)
    write_run(tmp_path / "new" / "1", "cls", 1, 0.9, labels, labels)
    for folder, layers in ((tmp_path / "new" / "0", "last"), (tmp_path / "new" / "1", "scalar_mix")):
        results = json.loads((folder / "results.json").read_text())
        results["choices"]["layers"] = layers
        (folder / "results.json").write_text(json.dumps(results))
    table = tables.build_table(find_runs([tmp_path / "old", tmp_path / "new"]), n_boot=50)
    assert table.by == ["layers"]
    rows = {r.key: r.stats["test/acc"] for r in table.rows}
    assert rows[("last",)] == pytest.approx((0.6, np.std([0.5, 0.7], ddof=1), 2))
    assert rows[("scalar_mix",)][0] == pytest.approx(0.9)


def test_a_setting_that_differs_within_a_row_is_reported(tmp_path):
    # a study resumed on other hardware: the precision chosen by the machine changed between seeds of one row
    labels = [0, 1, 0, 1]
    for job, (pooling, seed, precision) in enumerate(
        [("cls", 1, "bf16-mixed"), ("cls", 2, "bf16-mixed"), ("mha", 1, "bf16-mixed"), ("mha", 2, "32-true")]
    ):
        folder = tmp_path / "sweep" / str(job)
        write_run(folder, pooling, seed, 0.5, labels, labels)
        results = json.loads((folder / "results.json").read_text())
        results["config"]["trainer"] = {"precision": precision}
        if job >= 2:  # newer records carry the group's `_partial_` too: bookkeeping, not a difference
            results["config"]["layers"] = {"_partial_": True}
        (folder / "results.json").write_text(json.dumps(results))
    runs = find_runs([tmp_path / "sweep"])
    table = tables.build_table(runs, by=["pooling"], ref="pooling=cls", n_boot=50)
    [note] = [n for n in table.notes if n.startswith("trainer.precision")]
    assert "bf16-mixed in 3 runs, 32-true in 1 runs" in note
    assert "pooling=mha: bf16-mixed (seeds 1); 32-true (seeds 2)" in note and "pooling=cls:" not in note
    assert f"- note: {note}" in report.to_markdown(table)
    assert not any("_partial_" in n for n in table.notes)

    # the same setting as a row key: nothing left to report
    table = tables.build_table(runs, by=["pooling", "trainer.precision"], n_boot=50)
    assert not any("differs between runs" in n for n in table.notes)


def test_jobs_are_read_in_sweep_order(tmp_path):
    labels = [0, 1, 0, 1]
    for job, pooling in ((10, "max"), (2, "mean"), (1, "cls")):
        write_run(tmp_path / "sweep" / str(job), pooling, 1, 0.5, labels, labels)
    assert [r.folder.name for r in find_runs([tmp_path / "sweep"])] == ["1", "2", "10"]


def test_archive_keeps_what_the_table_needs_and_drops_the_texts(sweep, tmp_path, capsys):
    for preds in sweep.rglob("test_predictions.jsonl"):  # as written by train.py: with the texts
        rows = [{**json.loads(line), "text": "a private sentence"} for line in preds.read_text().splitlines()]
        preds.write_text("\n".join(map(json.dumps, rows)) + "\n")
    w = sweep / "cls1" / "wandb" / "offline-run-x" / "files" / "poolbench"  # the copy a W&B run carries
    w.mkdir(parents=True)
    (w / "results.json").write_text((sweep / "cls1" / "results.json").read_text())
    assert cli(["archive", str(sweep), str(tmp_path / "copy")]) == 0
    assert "archived 7 run(s)" in capsys.readouterr().out
    assert not list((tmp_path / "copy").rglob("wandb"))
    copied = list((tmp_path / "copy").rglob("test_predictions.jsonl"))
    assert len(copied) == 7 and all("private" not in p.read_text() for p in copied)
    original = report.to_markdown(tables.build_table(find_runs([sweep]), n_boot=100))
    again = report.to_markdown(tables.build_table(find_runs([tmp_path / "copy"]), n_boot=100))
    assert again.split("- not included")[0] == original.split("- not included")[0]


class FakeFile:
    def __init__(self, name: str, local: Path):
        self.name, self.local = name, local

    def download(self, root: str = ".", replace: bool = False, exist_ok: bool = False):
        target = Path(root) / self.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(self.local.read_bytes())


class FakeWandbRun:
    """What `wandb.Api().runs(...)` yields: id, name, state, group, config, summary, files()."""

    def __init__(self, run_id: str, folder: Path | None, group: str, state="finished", config=None, summary=None):
        self.id, self.name, self.state, self.group = run_id, f"job-{run_id}", state, group
        self.config, self.summary, self.folder = config or {}, summary or {}, folder

    def files(self):
        if self.folder is None:
            return []
        return [FakeFile(f"poolbench/{p.name}", p) for p in sorted(self.folder.iterdir())] + [
            FakeFile("output.log", self.folder / "results.json")
        ]


class FakeApi:
    def __init__(self, runs):
        self._runs, self.calls = runs, []

    def runs(self, path, filters=None):
        self.calls.append((path, filters))
        return [r for r in self._runs if not filters or r.group == filters.get("group")]


def test_the_table_from_wandb_is_the_table_from_the_folders(sweep, tmp_path):
    """Each job attaches its records to its W&B run; read back with the public API they give the same table."""
    folders = sorted(p.parent for p in sweep.rglob("results.json"))
    api = FakeApi(
        [FakeWandbRun(f"id{i}", f, "sweep-a") for i, f in enumerate(folders)]
        + [FakeWandbRun("other", folders[0], "sweep-b")]
    )
    runs = find_wandb_runs("me/poolbench", group="sweep-a", cache=tmp_path / "cache", api=api)
    assert api.calls == [("me/poolbench", {"group": "sweep-a"})] and len(runs) == len(folders)
    from_wandb = tables.build_table(runs, ref="pooling=cls", n_boot=300)
    from_folders = tables.build_table(find_runs([sweep]), ref="pooling=cls", n_boot=300)
    assert (
        report.to_markdown(from_wandb).split("- not included")[0]
        == (report.to_markdown(from_folders).split("- not included")[0])
    )
    (failed,) = from_wandb.problems  # the failed job is listed, named by its W&B run
    assert failed.startswith("wandb:me/poolbench/") and "failed (RuntimeError: boom)" in failed


def test_runs_logged_without_records_come_from_config_and_summary(tmp_path):
    runs = [
        FakeWandbRun(
            f"r{seed}{p}",
            None,
            "g",
            config={"seed": seed, "pooling": {"name": p, "_target_": p}},
            summary={"test/acc": acc, "_step": 10, "test/confusion_matrix": {"_type": "table"}},
        )
        for p, accs in (("cls", (0.5, 0.7)), ("mean", (0.8, 0.9)))
        for seed, acc in enumerate(accs)
    ] + [FakeWandbRun("crash", None, "g", state="crashed", config={"seed": 0, "pooling": {"name": "max"}})]
    table = tables.build_table(find_wandb_runs("me/p", cache=tmp_path, api=FakeApi(runs)), metrics=["test/acc"])
    rows = {r.key: r.stats["test/acc"] for r in table.rows}
    assert table.by == ["pooling"]
    assert rows[("cls",)] == pytest.approx((0.6, np.std([0.5, 0.7], ddof=1), 2))
    assert rows[("mean",)] == pytest.approx((0.85, np.std([0.8, 0.9], ddof=1), 2))
    assert any("crash" in p and "failed" in p for p in table.problems)
    assert any("no paired comparisons" in n for n in table.notes)


def test_cli_reads_wandb_and_says_what_went_wrong(sweep, tmp_path, monkeypatch, capsys):
    import wandb

    folders = sorted(p.parent for p in sweep.rglob("results.json"))
    monkeypatch.setenv("POOLBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(wandb, "Api", lambda: FakeApi([FakeWandbRun(str(i), f, "g") for i, f in enumerate(folders)]))
    out = tmp_path / "out"
    assert cli(["table", "--wandb", "me/poolbench", "--group", "g", "--out", str(out), "--bootstrap", "100"]) == 0
    assert "| cls | 3 |" in capsys.readouterr().out and (out / "table.md").exists()
    assert cli(["table", "--wandb", "me/poolbench", "--group", "nope", "--out", str(out)]) == 2
    assert "no W&B runs in me/poolbench with group 'nope'" in capsys.readouterr().err

    def refuse():
        raise RuntimeError("api_key not configured")

    monkeypatch.setattr(wandb, "Api", refuse)
    assert cli(["table", "--wandb", "me/poolbench"]) == 2
    assert "could not read runs from W&B me/poolbench: RuntimeError: api_key not configured" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli(["table", str(sweep), "--wandb", "me/poolbench"])  # one source, not both


def test_verdicts_say_which_rows_are_tied_with_the_best(tmp_path):
    """Each seed's model is the same model for every row (pairing by seed, as data order and initialisation make
    it), changed by the row: the best; a copy of it differing on a handful of texts (within the margin: tied); one 10
    points worse (worse by more than the margin). Then a row whose seeds scatter by up to 20 points: nothing can be
    claimed about it (inconclusive), and the difference in spread is noted."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 2000)
    base = {s: np.where(rng.random(2000) < 0.90, labels, 1 - labels) for s in (1, 2, 3)}
    worse = rng.random(2000) < 0.11  # the texts cls gets wrong on top

    def flip(p: np.ndarray, where: np.ndarray) -> np.ndarray:
        return np.where(where, 1 - labels, p)

    rows = {
        "mean": base,
        "mean_copy": {s: np.where(np.arange(2000) < s, 1 - p, p) for s, p in base.items()},
        "cls": {s: flip(p, worse) for s, p in base.items()},
    }
    spread = {s: flip(p, np.arange(2000) < n) for (s, p), n in zip(base.items(), (0, 40, 400), strict=True)}

    def build(rows: dict, folder: str, **options):
        for pooling, seeds in rows.items():
            for seed, preds in seeds.items():
                acc = float(np.mean(preds == labels))
                write_run(tmp_path / folder / f"{pooling}{seed}", pooling, seed, acc, preds.tolist(), labels.tolist())
        return tables.build_table(find_runs([tmp_path / folder]), metrics=["test/acc"], n_boot=500, **options)

    table = build(rows, "s")
    verdicts = {row.key[0]: row.verdict["test/acc"] for row in table.rows}
    assert {k: v.kind.value for k, v in verdicts.items()} == {
        "mean": "best",
        "mean_copy": "tied",
        "cls": "clearly worse",
    }
    assert verdicts["cls"].p_adjusted < 0.05 <= verdicts["mean_copy"].p_adjusted
    assert table.families["test/acc"][0].layout == "two-way"  # the rows share seeds
    sentence = report.verdict_sentence(table, "test/acc")
    assert sentence.startswith("test/acc: pooling=mean has the best mean (")
    assert "tied with it (within ±0.50 points): pooling=mean_copy" in sentence
    assert sentence.endswith("worse by more than 0.50 points: pooling=cls.")
    text = report.to_markdown(table)
    assert "| tied (±0.50) [" in text and "| worse > 0.50 [" in text and f"- **Verdict.** {sentence}" in text
    assert "- Controlled: the chance that any row as good as the best is called worse is at most 5%" in text
    assert "equivalence floor ±" in text and "Warning" not in text  # a floor below the margin: ties are reachable
    wider = tables.build_table(find_runs([tmp_path / "s"]), metrics=["test/acc"], n_boot=500, margin=0.2)
    assert {row.key[0]: row.verdict["test/acc"].kind.value for row in wider.rows}["cls"] == "worse"  # not by 20
    narrow = tables.build_table(find_runs([tmp_path / "s"]), metrics=["test/acc"], n_boot=500, margin=0.0001)
    assert "Warning: the margin ±0.01 is below it: no row can be shown tied" in report.to_markdown(narrow)

    scattered = build({**rows, "spread": spread}, "t")
    kinds = {row.key[0]: row.verdict["test/acc"].kind.value for row in scattered.rows}
    assert kinds["spread"] == "inconclusive"  # and, the spread being pooled, every interval widens: said in a note
    assert "the seed spread differs between rows (Levene p = " in report.to_markdown(scattered)


@pytest.mark.slow
def test_a_table_over_two_tasks_ranks_the_rows_across_them(tmp_path, cache_dir):
    """Two small CSV tasks (val and test held out of each), three poolings, two seeds: a block per task, mean
    ranks, Friedman's p-value and a critical-difference diagram."""
    tasks = [write_csv(tmp_path / f"task{t}.csv", synthetic_rows(160, seed=t)) for t in (1, 2)]
    sweep = tmp_path / "sweep"
    args = [
        "-m",
        "data=csv",
        f"data.train={tasks[0]},{tasks[1]}",
        "data.holdout=0.2",
        "pooling=cls,mean,max",
        "seed=1,2",
        "logger=none",
        f"hydra.sweep.dir={sweep}",
    ]
    done = train_cli(args, clean_env(tmp_path, cache_dir))
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "report"
    assert cli(["table", str(sweep), "--out", str(out), "--bootstrap", "200"]) == 0
    text = (out / "table.md").read_text()
    assert text.count("## task: data.train=") == 2 and "## Across tasks" in text
    assert "| pooling | mean rank |" in text and text.count("- **Verdict.**") == 4  # 2 metrics x 2 tasks
    assert "Across 2 tasks (data.train), rows ranked by test/f1_macro" in text and "Friedman test" in text
    p = re.search(r"Friedman test that all rows rank alike: p = ([0-9.e-]+); Iman-Davenport F: p = ([0-9.e-]+)", text)
    assert p and 0 <= float(p.group(1)) <= 1 and 0 <= float(p.group(2)) <= 1
    assert ("no critical-difference diagram: the omnibus test did not reject" in text) == (float(p.group(2)) >= 0.05)
    assert (out / "cd.png").read_bytes().startswith(b"\x89PNG")
    assert len(list(out.glob("metrics-data.train=*.png"))) == 2


def test_rows_with_identical_predictions_are_said_to_be_one_model(sweep, tmp_path):
    """An attention pooler that stayed at its start is mean pooling: a row whose runs predict exactly as another
    row's, seed for seed, is named as its twin, gets no interval or floor of its own, stays out of the verdicts'
    family (the other rows' verdicts are those of the table without it), and its Δ is its twin's."""
    twin = tmp_path / "twin"
    shutil.copytree(sweep, twin)
    for seed in (1, 2, 3):
        folder = twin / f"twin{seed}"  # after mean{seed}: the later row is the twin
        shutil.copytree(twin / f"mean{seed}", folder)
        record = json.loads((folder / "results.json").read_text())
        record["choices"]["pooling"] = record["config"]["pooling"]["_target_"] = "attention"
        (folder / "results.json").write_text(json.dumps(record))
    alone = tables.build_table(find_runs([sweep]), by=["pooling"], ref="pooling=cls")
    both = tables.build_table(find_runs([twin]), by=["pooling"], ref="pooling=cls")
    text = report.to_markdown(both)
    rows = {row.key[0]: row for row in both.rows}
    assert rows["attention"].twin is rows["mean"] and rows["mean"].twin is None
    assert "identical predictions to pooling=mean" in text and "| attention | 3 |" in text
    assert "pooling=attention makes the same prediction as pooling=mean on every test text at each of its 3" in text
    assert rows["attention"].comparison["test/acc"].diff == rows["mean"].comparison["test/acc"].diff
    for key, row in ((r.key[0], r) for r in alone.rows):
        assert rows[key].verdict["test/acc"].kind is row.verdict["test/acc"].kind
        assert rows[key].verdict["test/acc"].interval == row.verdict["test/acc"].interval


def test_the_table_says_what_each_learned_part_did(sweep):
    """The measures of results.json "learned" under the table, and what a part that stayed at its start computed;
    records without them are said to be unmeasured."""
    assert "learned parts: not measured in these records" in report.to_markdown(
        tables.build_table(find_runs([sweep]), by=["pooling"])
    )
    for seed, top in ((1, 1.004), (2, 1.3)):
        path = sweep / f"mean{seed}" / "results.json"
        record = json.loads(path.read_text())
        stayed = top < 1.02
        record["learned"] = {
            "pooling": {
                "start": "query: zero (uniform token weights)",
                "lr": 5e-5,
                "moved": 0.2 * seed,
                "from_zero": True,
                "token_weights": {"kl_to_uniform": 0.001, "top_x_tokens": top, "examples": 400},
                "stayed": stayed,
                "note": "token weights within 2% of uniform on the test set: it computed mean pooling"
                if stayed
                else None,
            }
        }
        path.write_text(json.dumps(record))
    text = report.to_markdown(tables.build_table(find_runs([sweep]), by=["pooling"]))
    line = next(line for line in text.splitlines() if line.startswith("- note: pooling=mean: pooling"))
    assert "(query: zero (uniform token weights), lr 5e-05)" in line and "moved 0.2-0.4 from zero" in line
    assert "top token weight x tokens on the test set 1.004-1.300 (1 = uniform)" in line
    assert line.endswith("stayed at its start in 1 of 2 seed(s): it computed mean pooling")
    assert "not measured" not in text
