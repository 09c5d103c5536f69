"""The cluster path on a real SLURM (a one-node cluster the suite starts: the ``slurm`` fixture), as users run it:
``hydra/launcher=slurm`` sweeps as arrays, preemption and time limits that requeue and resume exactly, the
adaptive-seeds sweeper, DDP through ``srun``, a failing job among good ones, jobs racing on a cold cache."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import (
    ROOT,
    clean_env,
    data_overrides,
    one_wandb_run_each,
    read_record,
    single_process_val_f1,
    sweep_records,
)
from conftest import train_cli as train

from poolbench import cache

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SLURM = [
    "hydra/launcher=slurm",
    "hydra.launcher.partition=debug",
    "hydra.launcher.gpus_per_node=0",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
    "hydra.launcher.timeout_min=20",
]
# longer than 70 s of training even on a fast machine (about 100 s in one thread here: 96 examples, batch 16, 6 steps
# an epoch), so that the time-limit test's job must be signalled; a resume point every 40 steps
LONG = ["pooling=attention", "seed=7", "trainer.max_epochs=1500", "callbacks.last_checkpoint.every_n_train_steps=40"]


def squeue(*args: str) -> list[str]:
    done = subprocess.run(["squeue", "-h", *args], capture_output=True, text=True, check=True)
    return done.stdout.split()


@contextlib.contextmanager
def releasing_requeued_jobs():
    """SLURM holds a requeued job for about two minutes (reason BeginTime) before it may start again; on a real
    cluster that is a short wait among many jobs, in a test it is most of the time. Release them at once."""
    stop = threading.Event()

    def release() -> None:
        while not stop.wait(1):
            for job in squeue("-t", "PD", "-o", "%i:%r"):
                job_id, _, reason = job.partition(":")
                if reason == "BeginTime":
                    subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], capture_output=True)

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def submitit_logs(sweep: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in sorted((sweep / ".submitit").rglob("*_log.*")))


def outcome(folder: Path) -> tuple[int, dict, str]:
    rec = read_record(folder)
    assert rec["status"] == "finished", rec.get("error")
    return rec["global_step"], rec["metrics"], (folder / "test_predictions.jsonl").read_text()


def start(args: list[str], env: dict) -> subprocess.Popen:
    cmd = [sys.executable, str(ROOT / "train.py"), "debug=smoke", *args, "-m"]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(condition, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the sweep ended before {what}: {proc.stdout.read()[-3000:]}")
        if time.time() > deadline:
            pytest.fail(f"no {what} within {timeout:.0f} s")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, slurm, csv_data_module, cache_dir) -> tuple:
    """The LONG job run through to the end without interruption, with the same one thread as a SLURM job."""
    tmp = tmp_path_factory.mktemp("uninterrupted")
    args = [
        "-m",
        *data_overrides(csv_data_module),
        *LONG,
        "logger=none",
        "hydra/launcher=local_processes",
        f"hydra.sweep.dir={tmp / 'sweep'}",
    ]
    done = train(args, clean_env(tmp, cache_dir))
    assert done.returncode == 0, done.stderr[-3000:]
    assert read_record(tmp / "sweep" / "0")["host"]["torch_threads"] == 1
    return outcome(tmp / "sweep" / "0")


@pytest.fixture(scope="module")
def csv_data_module(tmp_path_factory) -> dict[str, Path]:
    from conftest import synthetic_rows, write_csv

    folder = tmp_path_factory.mktemp("data")
    return {
        s: write_csv(folder / f"{s}.csv", synthetic_rows(n, seed))
        for s, n, seed in (("train", 96, 0), ("val", 32, 1), ("test", 32, 2))
    }


def test_a_sweep_runs_as_one_array_with_every_record_one_wandb_folder_and_the_summary(
    tmp_path, slurm, csv_data, cache_dir
):
    sweep = tmp_path / "sweep"
    done = train(
        [
            "-m",
            *data_overrides(csv_data),
            "pooling=cls,mean",
            "trainer.max_epochs=1",
            *SLURM,
            f"hydra.sweep.dir={sweep}",
        ],
        clean_env(tmp_path, cache_dir, WANDB_MODE="offline"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    records = sweep_records(sweep)
    assert [(r["status"], r["choices"]["pooling"]) for r in records] == [("finished", "cls"), ("finished", "mean")]
    arrays = {p.name.split("_")[0] for p in (sweep / ".submitit").rglob("*_log.out")}
    assert len(arrays) == 1 and len(list((sweep / ".submitit").rglob("*_log.out"))) == 2  # one array, two tasks
    assert all(r["host"]["torch_threads"] == 1 for r in records)  # cpus_per_task
    assert len(one_wandb_run_each(sweep)) == 2
    assert f"sweep {sweep}: 2 finished, 0 failed" in done.stdout
    assert (
        "Bypassing sacct error" not in done.stdout + done.stderr
    )  # said once, in words, on this accounting-less cluster


def test_scancel_usr2_checkpoints_requeues_and_resumes_to_the_uninterrupted_result(
    tmp_path, slurm, csv_data_module, cache_dir, uninterrupted
):
    sweep = tmp_path / "sweep"
    args = [*data_overrides(csv_data_module), *LONG, *SLURM, "logger=none", f"hydra.sweep.dir={sweep}"]
    with releasing_requeued_jobs():
        proc = start(args, clean_env(tmp_path, cache_dir))
        wait_for((sweep / "0" / "checkpoints" / "last.ckpt").exists, 300, "resume checkpoint", proc)
        (job_id,) = squeue("-t", "R", "-o", "%A")
        subprocess.run(["scancel", "--signal=USR2", job_id], check=True)  # what the scheduler sends on preemption
        out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-3000:]
    assert_requeued_and_exact(sweep, uninterrupted, out)


def test_a_real_time_limit_signals_checkpoints_requeues_and_resumes_to_the_uninterrupted_result(
    tmp_path, slurm, csv_data_module, cache_dir, uninterrupted
):
    """A two-minute limit with signal_delay_s=50: SLURM's own USR2 before the limit, as many times as it takes.
    SLURM sends the signal up to 60 s earlier than asked, so here 10 to 70 s after the start (with a one-minute
    limit it could come before Python has started, and kill the job)."""
    sweep = tmp_path / "sweep"
    args = [
        *data_overrides(csv_data_module),
        *LONG,
        *SLURM,
        "hydra.launcher.timeout_min=2",
        "hydra.launcher.signal_delay_s=50",
        "hydra.launcher.max_num_timeout=20",
        "logger=none",
        f"hydra.sweep.dir={sweep}",
    ]
    with releasing_requeued_jobs():
        proc = start(args, clean_env(tmp_path, cache_dir))
        out, _ = proc.communicate(timeout=1200)
    assert proc.returncode == 0, out[-3000:]
    assert "this job is timed-out" in submitit_logs(sweep)
    assert_requeued_and_exact(sweep, uninterrupted, out)


def assert_requeued_and_exact(sweep: Path, uninterrupted: tuple, out: str) -> None:
    logs, train_log = submitit_logs(sweep), (sweep / "0" / "train.log").read_text()
    assert "Requeued job" in logs and "preempted or timed out: saving" in train_log  # requeued by SLURM
    assert read_record(sweep / "0")["resumed_from"].endswith("last.ckpt")
    assert outcome(sweep / "0") == uninterrupted  # steps, metrics (test macro-F1 among them) and predictions
    everything = logs + train_log + out
    assert "SLURM auto-requeueing enabled" not in everything  # Lightning's requeue is off: submitit's alone
    assert "not resumable" not in everything  # the training loader resumes mid-epoch, and says so


def test_a_failing_job_is_reported_and_the_others_finish(tmp_path, slurm, csv_data, cache_dir):
    sweep = tmp_path / "sweep"
    failing = ["+callbacks.fail._target_=killer.FailAtStep", "+callbacks.fail.step=-1,3"]  # -1: never fails
    args = ["-m", *data_overrides(csv_data), "trainer.max_epochs=2", *failing, *SLURM, f"hydra.sweep.dir={sweep}"]
    done = train(args, clean_env(tmp_path, cache_dir))
    assert done.returncode == 1, done.stdout[-3000:]
    good, bad = sweep_records(sweep)
    assert good["status"] == "finished" and bad["status"] == "failed"
    assert "RuntimeError: a test failure at step 3" in bad["error"]
    assert f"sweep {sweep}: 1 finished, 1 failed or unfinished" in done.stdout
    assert "a test failure at step 3" in done.stdout.split(f"sweep {sweep}:")[1]


def test_ddp_with_two_tasks_through_srun_matches_one_process(tmp_path, slurm, csv_data, cache_dir):
    run_dir = tmp_path / "sweep"
    done = train(
        [
            "-m",
            *data_overrides(csv_data),
            "trainer=ddp",
            "trainer.devices=2",
            "trainer.accelerator=cpu",
            "trainer.precision=32-true",
            "trainer.max_epochs=2",
            *SLURM,
            "hydra.launcher.tasks_per_node=2",
            "hydra.launcher.mem_gb=2",
            f"hydra.sweep.dir={run_dir}",
        ],
        clean_env(tmp_path, cache_dir),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    job = run_dir / "0"
    record = read_record(job)
    assert record["status"] == "finished" and record["world_size"] == 2
    assert "srun" in (run_dir / ".submitit").rglob("*_submission.sh").__next__().read_text()
    assert single_process_val_f1(job) == pytest.approx(record["metrics"]["val/f1_macro_best"], abs=1e-6)


def test_the_adaptive_sweeper_runs_its_rounds_on_slurm_and_resumes_after_its_controller_was_killed(
    tmp_path, slurm, csv_data, cache_dir
):
    sweep = tmp_path / "sweep"
    args = [
        *data_overrides(csv_data),
        "trainer.max_epochs=1",
        "pooling=cls,mean",
        "hydra/sweeper=adaptive_seeds",
        "hydra.sweeper.min_seeds=2",
        "hydra.sweeper.max_seeds=3",
        "hydra.sweeper.futility=0",
        *SLURM,
        "hydra.launcher.array_parallelism=2",
        "logger=none",
        f"hydra.sweep.dir={sweep}",
    ]
    env = clean_env(tmp_path, cache_dir)
    proc = start(args, env)
    finished = lambda: sum(read_record(p.parent)["status"] == "finished" for p in sweep.glob("*/results.json"))  # noqa: E731
    wait_for(lambda: finished() >= 1, 300, "finished job", proc)
    os.kill(proc.pid, signal.SIGKILL)  # the controlling process dies; its array goes on under SLURM
    proc.communicate()
    wait_for(lambda: not squeue(), 600, "end of the orphaned jobs")  # before resuming, as the README says
    before = {p: p.read_text() for p in sweep.glob("*/results.json") if read_record(p.parent)["status"] == "finished"}
    done = train(["-m", *args, "resume=true"], env)
    assert done.returncode == 0, done.stdout[-3000:]
    assert before and all(p.read_text() == text for p, text in before.items())  # nothing that finished ran again
    assert "finished before, skipped" in submitit_logs(sweep)
    design, *rounds = [json.loads(line) for line in (sweep / "decisions.jsonl").read_text().splitlines()]
    assert design["design"]["max_seeds"] == 3 and rounds[0]["round"] == 1 and "jobs" in rounds[-1]
    records = [read_record(p.parent) for p in sweep.glob("*/results.json")]
    assert all(r["status"] == "finished" for r in records) and len(records) == rounds[-1]["jobs"]


def test_four_jobs_starting_together_on_a_cold_cache_leave_one_entry_each_and_the_same_metrics(
    tmp_path, slurm, csv_data
):
    """An array of 4 one-CPU jobs (the test node has 4 slots) building the tokenised splits and the frozen token
    states at once; then the same jobs one by one on the warm cache."""
    cache_dir = tmp_path / "cache"
    env = clean_env(tmp_path, cache_dir)
    jobs = [
        *data_overrides(csv_data),
        "encoder.freeze=true",
        "pooling=mean",
        "seed=3",
        "trainer.max_epochs=2",
        "model.head_lr=1e-3,2e-3,3e-3,4e-3",
        "logger=none",
    ]
    cold = tmp_path / "cold"
    done = train(["-m", *jobs, *SLURM, "hydra.launcher.array_parallelism=4", f"hydra.sweep.dir={cold}"], env)
    assert done.returncode == 0, done.stdout[-3000:]
    for kind in ("tokenized", "features"):
        found = sorted((cache_dir / kind).iterdir())
        assert len(found) == 3 and all((p / cache.MANIFEST).is_file() and cache.damage(p) is None for p in found)
    warm = tmp_path / "warm"
    done = train(["-m", *jobs, f"hydra.sweep.dir={warm}", "hydra/launcher=local_processes"], env)
    assert done.returncode == 0, done.stdout[-3000:]
    assert [outcome(cold / str(i)) for i in range(4)] == [outcome(warm / str(i)) for i in range(4)]
