"""Scaling out on existing engines: joblib and submitit launchers, requeue after preemption, DDP on CPU, Optuna."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import lightning.pytorch as pl
import pytest
import yaml
from conftest import ROOT, data_overrides, one_wandb_run_each, read_record, single_process_val_f1, tiny_bert, wandb_ids
from conftest import clean_env as env_for
from conftest import sweep_records as jobs
from conftest import train_cli as train
from omegaconf import OmegaConf

from poolbench.data.sampler import EpochSeededSampler

CORES = len(os.sched_getaffinity(0))


# --- parallel and cluster launchers -----------------------------------------------------------------------------
@pytest.mark.slow
def test_a_joblib_sweep_runs_jobs_in_parallel_processes_without_oversubscribing(tmp_path, csv_data, cache_dir):
    sweep = tmp_path / "sweep"
    done = train(
        [
            "-m",
            "pooling=cls,mean",
            *data_overrides(csv_data),
            "trainer.max_epochs=1",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            f"hydra.sweep.dir={sweep}",
        ],
        env_for(tmp_path, cache_dir),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    records = jobs(sweep)
    assert [r["status"] for r in records] == ["finished", "finished"]
    assert len({r["host"]["pid"] for r in records}) == 2  # two worker processes
    assert all(2 * r["host"]["torch_threads"] <= max(CORES, 2) for r in records)  # n_jobs x threads <= cores
    assert len(one_wandb_run_each(sweep)) == 2


@pytest.mark.slow
def test_a_submitit_local_sweep_gives_each_job_its_record_and_wandb_run(tmp_path, csv_data, cache_dir):
    sweep = tmp_path / "sweep"
    args = [
        "-m",
        "pooling=cls,mean",
        *data_overrides(csv_data),
        "trainer.max_epochs=1",
        "hydra/launcher=local_processes",
        f"hydra.sweep.dir={sweep}",
    ]
    done = train(args, env_for(tmp_path, cache_dir))
    assert done.returncode == 0, done.stderr[-3000:]
    records = jobs(sweep)
    assert [r["status"] for r in records] == ["finished", "finished"]
    assert [r["choices"]["pooling"] for r in records] == ["cls", "mean"]
    assert len({r["host"]["pid"] for r in records}) == 2 and all(r["host"]["torch_threads"] == 1 for r in records)
    assert len(one_wandb_run_each(sweep)) == 2


@pytest.mark.slow
def test_a_preempted_submitit_job_is_requeued_and_resumes_from_its_checkpoint(tmp_path, csv_data, cache_dir):
    """USR2 is what submitit (SLURM or local) sends on preemption or before the time limit."""
    sweep = tmp_path / "sweep"
    args = [
        "-m",
        "pooling=mean",
        *data_overrides(csv_data),
        "trainer.max_epochs=30",
        "hydra/launcher=local_processes",
        "callbacks.last_checkpoint.every_n_train_steps=20",
        f"hydra.sweep.dir={sweep}",
    ]
    cmd = [sys.executable, "train.py", "debug=smoke", *args[1:], "-m"]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env_for(tmp_path, cache_dir), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    ckpt = sweep / "0" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)  # training is under way once the periodic resume checkpoint exists
    assert ckpt.exists(), proc.communicate()[0][-3000:]
    os.kill(read_record(sweep / "0")["host"]["pid"], signal.SIGUSR2)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    (record,) = jobs(sweep)
    assert record["status"] == "finished" and record["resumed_from"] == str(ckpt)
    assert record["global_step"] == 30 * 6  # 96 examples, batch 16: nothing trained twice, nothing skipped
    log = (sweep / "0" / "train.log").read_text()
    assert "preempted or timed out: saving" in log
    assert len(one_wandb_run_each(sweep)) == 1  # the requeued job logged into the same W&B run


def test_the_slurm_launcher_config_exposes_the_usual_settings(compose):
    launcher = compose(["hydra/launcher=slurm"]).hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    for key in (
        "partition",
        "timeout_min",
        "gpus_per_node",
        "nodes",
        "tasks_per_node",
        "array_parallelism",
        "setup",
        "signal_delay_s",
        "max_num_timeout",
    ):
        assert key in launcher, key
    assert compose(["hydra/launcher=local_processes"]).hydra.launcher._target_.endswith("LocalLauncher")


# --- DDP ---------------------------------------------------------------------------------------------------------
def test_training_batches_are_dealt_out_to_ranks_whole_and_evenly():
    lengths = [5 + (i * 7) % 40 for i in range(103)]
    single = list(EpochSeededSampler(lengths, 8, seed=3))
    batches = [single[i : i + 8] for i in range(0, len(single), 8)]  # 13 batches, the last one short
    shards = [list(EpochSeededSampler(lengths, 8, seed=3, rank=r, num_replicas=3)) for r in range(3)]
    for r, shard in enumerate(shards):
        assert shard == [i for b in batches[r::3][:4] for i in b]  # whole batches, 4 each (13 // 3)
        assert len(shard) == len(EpochSeededSampler(lengths, 8, seed=3, rank=r, num_replicas=3))
    assert not set(shards[0]) & set(shards[1]) and not set(shards[1]) & set(shards[2])
    with pytest.raises(ValueError, match="rank 3 outside"):
        EpochSeededSampler(lengths, 8, seed=3, rank=3, num_replicas=3)


def test_a_ddp_strategy_needs_poolbench_to_shard_the_data(compose):
    from poolbench.run.checks import problems

    assert problems(compose(["trainer=ddp"])) == [] and problems(compose(["trainer.strategy=ddp"])) == []
    bad = problems(compose(["trainer.strategy=ddp", "trainer.use_distributed_sampler=true"]))
    assert any(p.startswith("trainer.use_distributed_sampler: must be false") for p in bad)


@pytest.mark.slow
def test_ddp_on_cpu_with_two_processes_matches_a_single_process_evaluation(tmp_path, csv_data, cache_dir):
    run_dir = tmp_path / "run"
    done = train(
        [
            *data_overrides(csv_data),
            "trainer=ddp",
            "trainer.devices=2",
            "trainer.accelerator=cpu",
            "trainer.precision=32-true",
            "trainer.max_epochs=2",
            "pooling=attention",
            f"hydra.run.dir={run_dir}",
        ],
        env_for(tmp_path, cache_dir),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in run_dir.rglob("results.json") if "wandb" not in p.parts) == ["results.json"]
    results = read_record(run_dir)
    assert results["status"] == "finished" and results["world_size"] == 2
    assert len(wandb_ids(run_dir)) == 1  # one W&B run, from rank zero
    from poolbench.record import read_predictions

    preds = read_predictions(run_dir)
    assert sorted(p["idx"] for p in preds) == list(range(results["num_examples"]["test"]))  # each example once
    acc = sum(p["label"] == p["pred"] for p in preds) / len(preds)
    assert results["metrics"]["test/acc"] == pytest.approx(acc)  # synced over both ranks' halves
    assert results["learned"]["pooling"]["token_weights"]["examples"] == len(preds)  # both ranks' token weights
    # the best checkpoint, evaluated in one process on the whole validation set, gives the DDP run's number
    assert single_process_val_f1(run_dir) == pytest.approx(results["metrics"]["val/f1_macro_best"], abs=1e-6)


@pytest.mark.slow
def test_a_sweep_of_ddp_jobs_runs_each_job_on_its_own_ranks(tmp_path, csv_data, cache_dir):
    """Lightning relaunches the other ranks from the command line: in a sweep, as that one job, in its folder."""
    sweep = tmp_path / "sweep"
    done = train(
        [
            "-m",
            "pooling=cls,mean",
            *data_overrides(csv_data),
            "trainer=ddp",
            "trainer.devices=2",
            "trainer.accelerator=cpu",
            "trainer.max_epochs=1",
            f"hydra.sweep.dir={sweep}",
        ],
        env_for(tmp_path, cache_dir),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    records = jobs(sweep)
    assert [(r["status"], r["world_size"], r["choices"]["pooling"]) for r in records] == [
        ("finished", 2, "cls"),
        ("finished", 2, "mean"),
    ]
    assert sorted(p.parent.name for p in sweep.rglob("results.json") if "wandb" not in p.parts) == ["0", "1"]
    assert len(one_wandb_run_each(sweep)) == 2


# --- Optuna ------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_an_optuna_search_writes_its_results_and_the_table_picks_the_best_trial(tmp_path, csv_data, cache_dir):
    sweep = tmp_path / "search"
    done = train(
        [
            "hparams_search=optuna",
            "hydra.sweeper.n_trials=3",
            *data_overrides(csv_data),
            "logger=none",
            "trainer.max_epochs=1",
            f"hydra.sweep.dir={sweep}",
        ],
        env_for(tmp_path, cache_dir),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(found["best_params"]) == {"model.lr", "model.head_lr", "model.classifier_dropout", "model.warmup_ratio"}
    records = jobs(sweep)
    assert len(records) == 3 and all(r["status"] == "finished" for r in records)
    assert len({r["config"]["model"]["lr"] for r in records}) == 3  # three different trials
    best = max(records, key=lambda r: r["metrics"]["val/f1_macro"])
    assert found["best_value"] == pytest.approx(best["metrics"]["val/f1_macro"])
    assert "model.lr=" in records[0]["overrides"] and "data.train" not in records[0]["overrides"]

    from poolbench.analysis.runs import find_runs
    from poolbench.analysis.table import build_table

    table = build_table(find_runs([sweep]), by=["pooling"], best_by="val/f1_macro", n_boot=50)
    (row,) = table.rows
    assert row.runs[0].record.config["model"]["lr"] == best["config"]["model"]["lr"]
    assert "best of 3 settings by val/f1_macro" in table.notes[0]


def test_the_optuna_config_searches_both_rates_dropout_and_warmup_on_val_f1(compose):
    cfg = compose(["hparams_search=optuna"])
    assert cfg.optimized_metric == "val/f1_macro" and cfg.hydra.sweeper.direction == "maximize"
    searched = {"model.lr", "model.head_lr", "model.classifier_dropout", "model.warmup_ratio"}
    assert set(cfg.hydra.sweeper.params) == searched
    assert OmegaConf.select(cfg, "hydra.sweeper._target_").endswith("OptunaSweeper")


def test_the_preemption_signal_saves_at_the_end_of_the_step_then_hands_over(tmp_path):
    """In process: USR2 arrives mid-step; the step finishes, last.ckpt is written, then submitit's handler runs."""
    import torch

    from poolbench.model.classifier import PoolingClassifier
    from poolbench.model.poolers import MeanPooling
    from poolbench.run.preemption import Preemption

    handed_over = []

    def submitit_handler(signum, frame):  # stands in for submitit's: requeue, then exit
        handed_over.append(signum)
        raise SystemExit(3)

    class SignalDuringStep(pl.Callback):
        def on_before_optimizer_step(self, trainer, *args):
            if trainer.global_step == 4:
                os.kill(os.getpid(), signal.SIGUSR2)

    items = [
        {
            "input_ids": torch.randint(5, 500, (6,)),
            "attention_mask": torch.ones(6, dtype=torch.long),
            "labels": torch.tensor(i % 2),
        }
        for i in range(64)
    ]
    loader = torch.utils.data.DataLoader(items, batch_size=4)
    ckpt = tmp_path / "last.ckpt"
    previous = signal.signal(signal.SIGUSR2, submitit_handler)
    try:
        trainer = pl.Trainer(
            max_steps=20,
            accelerator="cpu",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
            callbacks=[SignalDuringStep(), Preemption(ckpt, armed=True)],
        )
        with pytest.raises(SystemExit):
            trainer.fit(PoolingClassifier(tiny_bert(), MeanPooling, num_labels=2), train_dataloaders=loader)
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert handed_over == [signal.SIGUSR2]  # submitit's handler ran once, after the save
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert state["global_step"] == 5  # the step during which the signal came was finished and saved
