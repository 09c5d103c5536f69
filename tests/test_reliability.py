"""Reliability: sweeps that survive failures, checks before compute, NaN guard, reproducible runs, no secrets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import (
    CONF,
    ROOT,
    clean_env,
    data_overrides,
    offline_wandb_run,
    read_record,
    synthetic_rows,
    train_cli,
    wandb_summary,
    write_csv,
)

from poolbench.model.classifier import PoolingClassifier
from poolbench.run.checks import ConfigError


@pytest.fixture
def bad_train(tmp_path) -> Path:
    rows = synthetic_rows(40)
    rows[3]["text"] = ""
    return write_csv(tmp_path / "bad.csv", rows)


@pytest.mark.slow
@pytest.mark.parametrize("fail_fast", [False, True])
def test_sweep_keeps_going_past_a_failed_job_and_exits_non_zero(tmp_path, csv_data, cache_dir, bad_train, fail_fast):
    sweep = tmp_path / "sweep"
    args = [
        "-m",
        "data=csv",
        f"data.val={csv_data['val']}",
        f"data.test={csv_data['test']}",
        f"data.train={bad_train},{csv_data['train']}",
        f"fail_fast={str(fail_fast).lower()}",
        f"hydra.sweep.dir={sweep}",
    ]
    done = train_cli(args, clean_env(tmp_path, cache_dir, WANDB_MODE="offline"))
    assert done.returncode != 0
    assert (sweep / "0").is_dir(), done.stderr[-3000:]
    failed = read_record(sweep / "0")
    assert failed["status"] == "failed" and "row 4 (line 5): empty text" in failed["error"]
    wandb_run = offline_wandb_run(sweep, sweep / "0")
    assert wandb_summary(wandb_run)["exit_code"] == 1  # the W&B run is marked failed
    if fail_fast:
        assert not (sweep / "1").exists()  # stopped at the first failure
        assert "fail_fast=true" in done.stderr
    else:
        assert read_record(sweep / "1")["status"] == "finished"
        summary = done.stdout[done.stdout.index("sweep ") :]
        assert "1 finished, 1 failed" in summary and "empty text" in summary


def test_every_problem_of_a_sweep_in_one_message_before_anything_runs():
    from hydra import initialize_config_dir

    from poolbench.run.sweep import check_sweep

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        with pytest.raises(ConfigError) as err:
            check_sweep(
                "train",
                [
                    "pooling=cls,avg",
                    "model.lr=-1",
                    "data=csv",
                    "data.train=/no/such.csv",
                    "data.num_labels=1",
                    "encoder=tiny_bert",
                ],
            )
    message = str(err.value)
    assert "2 job(s) of this sweep have invalid configs; nothing was run" in message
    assert "model.lr: must be a positive number, got -1" in message
    assert "data.train: file '/no/such.csv' does not exist" in message
    assert "data.num_labels: must be null (from the data) or an integer >= 2, got 1" in message
    assert "Could not find 'pooling/avg'" in message


def test_poolers_and_layer_selectors_settings_are_checked_before_anything_runs(compose):
    from hydra import initialize_config_dir

    from poolbench.run.checks import problems
    from poolbench.run.sweep import check_sweep

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        with pytest.raises(ConfigError) as err:  # the tiny encoder: hidden size 32, 2 layers
            check_sweep("train", ["debug=smoke", "pooling=mha", "pooling.num_heads=3,4", "layers=last,last4_mean"])
    message = str(err.value)
    assert "3 job(s) of this sweep have invalid configs; nothing was run" in message  # all but heads=4, last
    assert message.count("pooling.num_heads: 3 does not divide the encoder's hidden size 32") == 2
    assert message.count("layers.k: 4 is more than the encoder's 2 layers (choose 1 <= k <= 2)") == 2
    assert problems(compose(["pooling=self_attentive", "pooling.hops=0", "pooling.penalty_weight=-1"])) == [
        "pooling.hops: must be an integer >= 1, got 0",
        "pooling.penalty_weight: must be a number >= 0, got -1",
    ]
    assert problems(compose(["pooling=mha", "pooling.num_heads=4", "layers=last4_mean", "layers.k=2"])) == []


def test_a_single_run_is_checked_too(run_job, csv_data, capsys):
    with pytest.raises(SystemExit) as stop:  # the user's error: exit status 2, one message
        run_job([*data_overrides(csv_data), "model.warmup_ratio=2"])
    assert stop.value.code == 2
    assert "model.warmup_ratio: must be in [0, 1], got 2" in capsys.readouterr().err


def test_non_finite_loss_stops_the_job_naming_the_step(run_job, csv_data, monkeypatch):
    original = PoolingClassifier.model_step

    def poisoned(self, batch):
        loss, logits, extra = original(self, batch)
        return (loss * float("nan") if self.training and self.global_step == 2 else loss), logits, extra

    monkeypatch.setattr(PoolingClassifier, "model_step", poisoned)
    with pytest.raises(FloatingPointError, match=r"non-finite training loss \(nan\) at step 2"):
        run_job([*data_overrides(csv_data), "trainer.max_epochs=3"])


def test_two_runs_of_one_config_give_identical_metrics_and_predictions(run_job, csv_data):
    overrides = [*data_overrides(csv_data), "pooling=attention", "trainer.max_epochs=2", "seed=11"]
    first, out = run_job(overrides)
    first_preds = (out / "test_predictions.jsonl").read_text()
    second, out = run_job(overrides)
    assert first["config"]["trainer"]["deterministic"] is True  # the CPU default
    assert first["metrics"] == second["metrics"]
    assert first_preds == (out / "test_predictions.jsonl").read_text()
    assert first["data_checksums"] == second["data_checksums"] and len(first["data_checksums"]["train"]) == 64
    torch.testing.assert_close(
        torch.tensor(first["metrics"]["train/loss"]), torch.tensor(second["metrics"]["train/loss"])
    )


@pytest.mark.slow
def test_simultaneous_runs_get_their_own_folders_and_never_write_the_api_key(tmp_path, csv_data, cache_dir):
    key = "fakefakefake" + "0123456789abcdef0123456789"  # 40 characters, like a real W&B key
    env = clean_env(tmp_path, cache_dir, WANDB_API_KEY=key, WANDB_MODE="offline")
    # a config that pulls the key in (as a user's own config might) must not write it out either
    cmd = [
        sys.executable,
        str(ROOT / "train.py"),
        "debug=smoke",
        *data_overrides(csv_data),
        "logger=wandb",
        "+note=${oc.env:WANDB_API_KEY}",
    ]
    procs = [
        subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs[0][-2000:]
    runs = sorted((tmp_path / "outputs").glob("*/*"))
    assert len(runs) == 2  # same second or not, two folders
    written = [f for run in runs for f in run.rglob("*") if f.is_file()]
    assert any(f.name == "results.json" for f in written) and any(f.suffix == ".wandb" for f in written)
    leaks = [str(f) for f in written if key.encode() in f.read_bytes()]
    assert leaks == []  # Hydra's .hydra/ files hold the interpolation, not its value
