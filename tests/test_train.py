"""End to end: one job in process, and the five-pooling multirun as a user types it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import ROOT, clean_env, data_overrides, offline_wandb_run, read_record, train_cli, wandb_summary

from poolbench.record import read_predictions


def test_one_job_writes_results_and_predictions(run_job, csv_data):
    results, out = run_job([*data_overrides(csv_data), "pooling=attention", "logger=csv", "seed=3"])
    assert results["status"] == "finished"
    assert results["choices"]["pooling"] == "attention" and results["config"]["seed"] == 3
    metrics = results["metrics"]
    for key in ("val/acc", "val/f1_macro", "test/acc", "test/f1_macro", "test/f1_positive", "val/f1_macro_best"):
        assert 0 <= metrics[key] <= 1, key  # fractions, not percentages
    assert metrics["train/loss"] > 0 and metrics["val/f1_macro_best"] >= metrics["val/f1_macro"]
    assert results["num_examples"] == {"train": 96, "val": 32, "test": 32}
    cm = results["confusion_matrix"]["rows_true_cols_pred"]
    assert sum(map(sum, cm)) == 32
    assert results["versions"]["torch"] and results["git"]["commit"]
    assert results["rerun"].startswith("python train.py ") and "pooling=attention" in results["rerun"]
    preds = read_predictions(out)
    assert [p["idx"] for p in preds] == list(range(32))
    assert all(p["pred"] == max(range(4), key=p["probs"].__getitem__) and p["text"] for p in preds)
    accuracy = sum(p["label"] == p["pred"] for p in preds) / len(preds)
    assert accuracy == pytest.approx(metrics["test/acc"])  # predictions and metric agree
    assert (out / "csv").is_dir() and results["best_checkpoint"].endswith(".ckpt")


def test_a_failing_job_is_recorded_as_failed(run_job, csv_data):
    bad = [*data_overrides(csv_data), "data.text_column=review"]
    with pytest.raises(SystemExit):  # the user's error (a data file without that column): exit status 2
        run_job(bad)
    out = Path(csv_data["train"]).parents[1] / "out"
    results = read_record(out)
    assert results["status"] == "failed" and "no column 'review'" in results["error"] and results["user_error"]
    assert "Traceback" in results["traceback"]


@pytest.mark.slow
def test_a_sweep_gives_one_record_per_job_and_its_wandb_runs_in_one_folder(tmp_path, csv_data, cache_dir, capsys):
    """Offline (no key), a 3-job sweep leaves exactly three W&B runs, all in SWEEP/wandb/, each finished, named by
    what varies, with the pooling, seed and precision in its config and its test metrics in its summary (read back
    with W&B's own `wandb leet inspect`)."""
    sweep = tmp_path / "sweep"
    args = ["-m", "pooling=cls,mean,attention", *data_overrides(csv_data), f"hydra.sweep.dir={sweep}"]
    done = train_cli(args, clean_env(tmp_path, cache_dir))  # no W&B key, no netrc: offline
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert len(jobs) == 3 and not any((job / "wandb").exists() for job in jobs)
    assert len(list((sweep / "wandb").glob("offline-run-*"))) == 3
    seen = {}
    for job in jobs:
        results = read_record(job)
        assert results["status"] == "finished", results.get("error")
        pooling = results["choices"]["pooling"]
        run = offline_wandb_run(sweep, job)
        summary = wandb_summary(run)
        assert summary["state"] == "finished" and summary["name"] == f"pooling={pooling}"
        config = summary["config"]
        assert config["pooling"]["name"] == pooling and config["seed"] == 42 and config["data"]["name"] == "csv"
        assert config["trainer"]["precision"] == results["config"]["trainer"]["precision"]
        assert "lr" not in config and config["model"]["lr"] == 5e-5  # the config once, nested, no duplicates
        assert summary["summary"]["test/f1_macro"] == pytest.approx(results["metrics"]["test/f1_macro"])
        assert summary["summary"]["val/f1_macro"]["max"] == pytest.approx(results["metrics"]["val/f1_macro_best"])
        assert summary["summary"]["test/acc"] == pytest.approx(results["metrics"]["test/acc"])
        # the run carries the job's record, so that `poolbench table --wandb` can rebuild the table
        attached = run / "files" / "poolbench"
        assert json.loads((attached / "results.json").read_text()) == results
        assert (attached / "test_predictions.jsonl").read_text().count("\n") == results["num_examples"]["test"]
        if pooling == "attention":  # what the attention pooler learned, for a few test texts and on all of them
            assert {"explain/token_weights", "explain/images"} <= set(summary["summary"])
            top = summary["summary"]["learned/pooling/token_weights/top_x_tokens"]
            assert top == pytest.approx(results["learned"]["pooling"]["token_weights"]["top_x_tokens"])
        seen[pooling] = summary["run_id"]
    assert sorted(seen) == ["attention", "cls", "mean"] and len(set(seen.values())) == 3
    assert done.stdout.count("[poolbench]") == 3
    # one command uploads them all (here: says what it would upload; no network)
    from poolbench.cli import main as cli

    capsys.readouterr()
    assert cli(["sync", str(sweep), "--dry-run"]) == 0
    assert f"3 offline run(s) under {sweep}" in capsys.readouterr().out
    # the table, its verdicts and plots: a summary run in the same folder and W&B group
    assert cli(["table", str(sweep), "--log-wandb", "--bootstrap", "100"]) == 0
    (table_run,) = set((sweep / "wandb").glob("offline-run-*")) - {offline_wandb_run(sweep, job) for job in jobs}
    summary = wandb_summary(table_run)
    assert summary["name"] == "ablation-table" and "ablation/table" in summary["summary"]
    assert "test/f1_macro: no verdict: every row has one seed" in summary["config"]["verdicts"][-1]


def test_tiny_roberta_job(run_job, csv_data):
    """The RoBERTa code path end to end (random weights, tokenizer trained on the fly: NOT pretrained)."""
    results, _ = run_job([*data_overrides(csv_data), "encoder=tiny_roberta", "pooling=cls"])
    assert results["status"] == "finished" and results["config"]["encoder"]["pretrained"] is False
    assert results["choices"]["encoder"] == "tiny_roberta" and results["num_examples"]["test"] == 32
    assert sum(map(sum, results["confusion_matrix"]["rows_true_cols_pred"])) == 32


@pytest.mark.slow
def test_a_sweep_over_every_pooler(tmp_path, csv_data, cache_dir):
    """`pooling=glob(*)` runs every pooler of conf/pooling/ end to end; self_attentive logs its penalty."""
    sweep = tmp_path / "sweep"
    args = [
        "-m",
        "pooling=glob(*)",
        "logger=csv",
        *data_overrides(csv_data),
        "trainer.log_every_n_steps=1",
        f"hydra.sweep.dir={sweep}",
    ]
    done = train_cli(args, clean_env(tmp_path, cache_dir), timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in sweep.glob("*/results.json")]
    configs = sorted(p.stem for p in (ROOT / "conf" / "pooling").glob("*.yaml"))
    assert sorted(r["choices"]["pooling"] for r in records) == configs and len(configs) >= 12
    assert all(r["status"] == "finished" for r in records), [r.get("error") for r in records]
    (attentive,) = [p.parent for p in sweep.glob("*/results.json") if "self_attentive" in p.read_text()]
    (metrics_csv,) = attentive.glob("csv/*/metrics.csv")
    penalties = [float(row["train/penalty"]) for row in csv.DictReader(metrics_csv.open()) if row["train/penalty"]]
    assert penalties and all(p >= 0 for p in penalties)
