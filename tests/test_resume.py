"""Resume: a job killed mid-epoch and resumed ends exactly like an uninterrupted one; finished jobs are skipped."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from conftest import clean_env, data_overrides, read_record
from conftest import train_cli as train

pytestmark = pytest.mark.slow


@pytest.fixture
def env(tmp_path, cache_dir) -> dict:
    return clean_env(tmp_path, cache_dir, WANDB_MODE="offline")


def job(csv_data) -> list[str]:
    # 96 examples / batch 16 = 6 steps an epoch, 3 epochs; a resume point every 2 steps
    return [
        *data_overrides(csv_data),
        "trainer.max_epochs=3",
        "pooling=attention",
        "seed=5",
        "callbacks.last_checkpoint.every_n_train_steps=2",
    ]


def outcome(folder: Path) -> tuple[dict, str]:
    results = read_record(folder)
    assert results["status"] == "finished", results.get("error")
    return results, (folder / "test_predictions.jsonl").read_text()


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path, csv_data, env):
    done = train([*job(csv_data), f"hydra.run.dir={tmp_path / 'whole'}"], env)
    assert done.returncode == 0, done.stderr[-3000:]
    whole, whole_preds = outcome(tmp_path / "whole")

    killed_dir = tmp_path / "killed"
    killer = ["+callbacks.killer._target_=killer.KillAtStep", "+callbacks.killer.step=9"]  # mid epoch 2
    done = train([*job(csv_data), *killer, f"hydra.run.dir={killed_dir}"], env)
    assert done.returncode == -signal.SIGKILL
    interrupted = read_record(killed_dir)
    assert interrupted["status"] == "running" and (killed_dir / "checkpoints" / "last.ckpt").is_file()

    done = train([*job(csv_data), "resume=true", f"hydra.run.dir={killed_dir}"], env)
    assert done.returncode == 0, done.stderr[-3000:]
    resumed, resumed_preds = outcome(killed_dir)
    assert resumed["resumed_from"].endswith("last.ckpt")
    assert resumed["wandb_id"] == interrupted["wandb_id"]  # the same W&B run continues
    assert resumed["global_step"] == whole["global_step"] == 18
    assert resumed["metrics"] == whole["metrics"]
    assert resumed_preds == whole_preds
    # what the learned parts did is measured from the real start, which the resume point carried
    assert resumed["learned"] == whole["learned"] and resumed["learned"]["pooling"]["moved"] > 0
    assert not (killed_dir / "checkpoints" / "last.ckpt").exists()  # removed once finished


def test_rerunning_a_finished_command_with_resume_skips_it(tmp_path, csv_data, env):
    args = [*job(csv_data), "trainer.max_epochs=1", "logger=none"]
    assert train(args, env, cwd=tmp_path).returncode == 0
    first = sorted((tmp_path / "outputs").glob("*/*"))
    done = train([*args, "resume=true"], env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "finished before, skipped (resume=true)" in done.stdout
    assert sorted((tmp_path / "outputs").glob("*/*")) == first  # no new folder: the same one was found


def test_rerunning_a_sweep_with_resume_continues_it_in_the_same_folder(tmp_path, csv_data, env):
    args = ["-m", *job(csv_data), "trainer.max_epochs=1", "logger=none", "pooling=cls,mean"]
    assert train(args, env, cwd=tmp_path).returncode == 0
    (sweep,) = (tmp_path / "multirun").glob("*/*")
    # job 1 was interrupted before its first checkpoint: it starts again; job 0 finished: it is skipped
    record = sweep / "1" / "results.json"
    record.write_text(record.read_text().replace('"status": "finished"', '"status": "running"'))
    done = train([*args, "resume=true"], env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert list((tmp_path / "multirun").glob("*/*")) == [sweep]
    assert done.stdout.count("finished before, skipped") == 1
    assert read_record(sweep / "1")["status"] == "finished"
    assert "2 finished, 0 failed" in done.stdout


def test_resume_set_in_a_config_file_works_like_on_the_command_line(tmp_path, csv_data, env):
    """`resume` is read from the composed config, not from the command line: a user's own config can set it."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "mine.yaml").write_text("defaults:\n  - train\n  - _self_\nresume: true\n")
    args = [
        *job(csv_data),
        "trainer.max_epochs=1",
        "logger=none",
        "--config-dir",
        str(tmp_path / "conf"),
        "--config-name",
        "mine",
    ]
    assert train(args, env, cwd=tmp_path).returncode == 0  # nothing to resume yet: a new folder
    first = sorted((tmp_path / "outputs").glob("*/*"))
    done = train(args, env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "finished before, skipped (resume=true)" in done.stdout
    assert sorted((tmp_path / "outputs").glob("*/*")) == first and len(first) == 1
