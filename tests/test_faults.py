"""Faults from outside: damaged caches, jobs racing on a cold cache, a full disk, a job preempted twice."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import ROOT, clean_env, data_overrides, read_record, sweep_records
from conftest import train_cli as train

from poolbench import cache
from poolbench.data import hutto
from poolbench.errors import DiskFullError, user_error

# 96 training examples, batch 16: 6 steps an epoch
JOB = ["pooling=attention", "seed=5", "trainer.max_epochs=3"]
FROZEN = ["encoder.freeze=true", "pooling=mean", "trainer.max_epochs=2"]


def outcome(folder: Path) -> tuple[int, dict, str]:
    """What a user compares between two runs of one config: steps, metrics and every test prediction."""
    rec = read_record(folder)
    assert rec["status"] == "finished", rec.get("error")
    return rec["global_step"], rec["metrics"], (folder / "test_predictions.jsonl").read_text()


def entries(cache_dir: Path, kind: str) -> list[Path]:
    return sorted(p for p in (cache_dir / kind).iterdir()) if (cache_dir / kind).is_dir() else []


# --- the cache mechanism ---------------------------------------------------------------------------------------
def test_a_cache_entry_is_built_once_sealed_and_rebuilt_with_one_warning_when_damaged(tmp_path, caplog):
    built = []

    def make(folder: Path) -> None:
        built.append(folder)
        (folder / "a.bin").write_bytes(b"x" * 1000)

    entry = tmp_path / "entry"
    assert cache.open_entry(entry, make, lambda f: (f / "a.bin").read_bytes(), "test data") == b"x" * 1000
    assert len(built) == 1 and built[0].name.startswith(".entry.") and not built[0].exists()  # unique temp name
    assert cache.damage(entry) is None and json.loads((entry / cache.MANIFEST).read_text())["files"]["a.bin"]
    cache.open_entry(entry, make, lambda f: None, "test data")
    assert len(built) == 1  # intact: reused

    with (entry / "a.bin").open("r+b") as f:
        f.truncate(10)  # a fault outside poolbench
    assert cache.damage(entry) == "a.bin has 10 bytes, 1000 were written"
    with caplog.at_level(logging.WARNING):
        assert cache.open_entry(entry, make, lambda f: (f / "a.bin").read_bytes(), "test data") == b"x" * 1000
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(entry) in warnings[0] and "a.bin has 10 bytes" in warnings[0]
    assert len(built) == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["entry"]  # nothing left aside


def test_a_cache_entry_that_cannot_be_rebuilt_names_the_folder_to_remove(tmp_path):
    entry = tmp_path / "entry"
    cache.open_entry(entry, lambda f: (f / "a.bin").write_bytes(b"abc"), lambda f: None, "test data")
    (entry / "a.bin").write_bytes(b"abd")  # same size, other content: the checksum finds it

    def cannot(folder: Path) -> None:
        raise OSError("read-only file system")

    with pytest.raises(cache.CacheError) as caught:
        cache.open_entry(entry, cannot, lambda f: None, "test data")
    message = str(caught.value)
    assert "has changed since it was written" in message and f"rm -rf '{entry}'" in message
    assert user_error(caught.value) is caught.value and "\n" not in message  # one line, exit status 2


def test_two_processes_building_one_entry_leave_one_whole_entry(tmp_path):
    """Each builds under its own name; the first rename wins, the other's copy is dropped."""
    code = (
        "import sys, time; from pathlib import Path; from poolbench import cache\n"
        "def make(f):\n    time.sleep(1); (f / 'a.bin').write_bytes(b'y' * 100000)\n"
        "print(len(cache.open_entry(Path(sys.argv[1]), make, lambda f: (f / 'a.bin').read_bytes(), 'x')))\n"
    )
    entry = tmp_path / "entry"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(entry)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=clean_env(tmp_path, tmp_path / "c"),
        )
        for _ in range(2)
    ]
    assert [p.communicate(timeout=120)[0].strip() for p in procs] == ["100000", "100000"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "home") == ["entry"]
    assert cache.damage(entry) is None


def test_the_hutto_files_are_checked_when_opened_and_extracted_again_when_damaged(tmp_path, monkeypatch, caplog):
    texts = {name: f"1\t2.5\tgood text of {name}\n".encode() for name, _ in hutto.FILES.values()}
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w:gz") as tar:
        for name, data in texts.items():
            info = tarfile.TarInfo(f"hutto_ICWSM_2014/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    outer = io.BytesIO()
    with tarfile.open(fileobj=outer, mode="w:gz") as tar:
        info = tarfile.TarInfo(hutto.INNER_MEMBER)
        info.size = len(inner.getvalue())
        tar.addfile(info, io.BytesIO(inner.getvalue()))
    archive = tmp_path / hutto.SDIST_FILE
    archive.write_bytes(outer.getvalue())
    monkeypatch.setattr(hutto, "SDIST_SHA256", hashlib.sha256(outer.getvalue()).hexdigest())
    monkeypatch.setattr(hutto, "INNER_SHA256", hashlib.sha256(inner.getvalue()).hexdigest())
    monkeypatch.setattr(
        hutto, "FILES", {s: (n, hashlib.sha256(texts[n]).hexdigest()) for s, (n, _) in hutto.FILES.items()}
    )

    folder = hutto.fetch(tmp_path / "cache", archive=archive)
    tweets = folder / hutto.FILES["tweets"][0]
    tweets.write_bytes(tweets.read_bytes()[:5])  # truncated by a fault outside poolbench
    with caplog.at_level(logging.WARNING):
        assert hutto.fetch(tmp_path / "cache", archive=archive) == folder
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert str(folder) in warning and hutto.FILES["tweets"][0] in warning
    assert tweets.read_bytes() == texts[hutto.FILES["tweets"][0]]
    assert len(hutto.read(folder)) == 4


# --- whole jobs ------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["tokenized", "features"])
def test_a_damaged_cache_entry_is_rebuilt_and_the_job_ends_as_before(tmp_path, csv_data, kind):
    cache_dir = tmp_path / "cache"
    env = clean_env(tmp_path, cache_dir, WANDB_MODE="disabled")
    args = [*data_overrides(csv_data), *FROZEN, "seed=3", "logger=none"]
    done = train([*args, f"hydra.run.dir={tmp_path / 'first'}"], env)
    assert done.returncode == 0, done.stderr[-3000:]
    first = outcome(tmp_path / "first")

    damaged = entries(cache_dir, kind)[-1]
    biggest = max(
        (p for p in damaged.rglob("*") if p.is_file() and p.name != cache.MANIFEST), key=lambda p: p.stat().st_size
    )
    with biggest.open("r+b") as f:
        f.truncate(biggest.stat().st_size // 2)
    done = train([*args, f"hydra.run.dir={tmp_path / 'second'}"], env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert outcome(tmp_path / "second") == first
    log = (tmp_path / "second" / "train.log").read_text()
    assert log.count("is damaged") == 1 and str(damaged) in log and biggest.name in log
    assert cache.damage(damaged) is None


@pytest.mark.slow
def test_two_joblib_jobs_on_a_cold_cache_leave_one_entry_each_and_the_same_metrics(tmp_path, csv_data):
    cache_dir = tmp_path / "cache"
    env = clean_env(tmp_path, cache_dir, WANDB_MODE="disabled")
    # one encoder (seed 3) for both jobs, so that they need the same entries; only the head's learning rate differs
    args = ["-m", *data_overrides(csv_data), *FROZEN, "logger=none", "seed=3", "model.head_lr=1e-3,3e-3"]
    cold = tmp_path / "cold"
    done = train([*args, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={cold}"], env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len({r["host"]["pid"] for r in sweep_records(cold)}) == 2  # the two jobs ran at once
    for kind in ("tokenized", "features"):
        found = entries(cache_dir, kind)
        assert len(found) == 3 and all(cache.damage(p) is None and (p / cache.MANIFEST).is_file() for p in found)
    warm = tmp_path / "warm"
    done = train([*args, f"hydra.sweep.dir={warm}"], env)  # one after the other, on the warm cache
    assert done.returncode == 0, done.stderr[-3000:]
    assert [outcome(cold / str(i)) for i in (0, 1)] == [outcome(warm / str(i)) for i in (0, 1)]


@pytest.fixture
def small_disk(tmp_path):
    """A 32 MB tmpfs (root only): a disk that can be filled."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_a_full_disk_stops_the_job_with_one_line_and_resume_continues_once_there_is_space(
    tmp_path, csv_data, cache_dir, small_disk
):
    env = clean_env(tmp_path, cache_dir, WANDB_MODE="disabled")
    args = [*data_overrides(csv_data), *JOB, "logger=none", "callbacks.last_checkpoint.every_n_train_steps=2"]
    done = train([*args, f"hydra.run.dir={tmp_path / 'whole'}"], env)
    assert done.returncode == 0, done.stderr[-3000:]

    run_dir, filler = small_disk / "run", small_disk / "filler"
    fill = [
        "+callbacks.fill._target_=killer.FillDiskAtStep",
        "+callbacks.fill.step=7",
        f"+callbacks.fill.path={filler}",
        f"+callbacks.fill.marker={tmp_path / 'filled'}",
    ]
    done = train([*args, *fill, f"hydra.run.dir={run_dir}"], env)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.startswith("poolbench:")]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "no space left" in lines[0] and str(run_dir / "checkpoints") in lines[0] and "MB free" in lines[0]
    filler.unlink()  # space again; the record and the last whole checkpoint survived
    rec = read_record(run_dir)
    assert rec["status"] == "failed" and rec["error"].startswith("DiskFullError")
    done = train([*args, *fill, "resume=true", f"hydra.run.dir={run_dir}"], env)  # filled once only
    assert done.returncode == 0, done.stderr[-3000:]
    assert read_record(run_dir)["resumed_from"].endswith("last.ckpt")
    got, want = outcome(run_dir), outcome(tmp_path / "whole")
    assert {k: (v, want[1].get(k)) for k, v in got[1].items() if v != want[1].get(k)} == {}
    assert got == want


def test_a_full_disk_error_names_the_path_what_and_the_free_space(tmp_path):
    err = DiskFullError(tmp_path / "missing" / "x.json", "the record")
    assert str(tmp_path / "missing" / "x.json") in str(err) and "the record" in str(err) and "free there" in str(err)
    assert user_error(err) is err


@pytest.mark.slow
def test_a_job_preempted_twice_ends_exactly_like_an_uninterrupted_one(tmp_path, csv_data, cache_dir):
    """The first signal in the last step of an epoch (the save waits one step: Lightning restores a checkpoint there
    badly), the second mid-epoch."""
    env = clean_env(tmp_path, cache_dir, WANDB_MODE="disabled")
    args = ["-m", *data_overrides(csv_data), *JOB, "logger=none", "hydra/launcher=local_processes"]
    done = train([*args, f"hydra.sweep.dir={tmp_path / 'whole'}"], env)
    assert done.returncode == 0, done.stderr[-3000:]
    signals = []
    for name, step in (("first", 5), ("second", 8)):
        signals += [
            f"+callbacks.{name}._target_=killer.SignalAtStep",
            f"+callbacks.{name}.step={step}",
            f"+callbacks.{name}.marker={tmp_path / name}",
        ]
    sweep = tmp_path / "preempted"
    done = train([*args, *signals, f"hydra.sweep.dir={sweep}"], env)
    assert done.returncode == 0, done.stderr[-3000:]
    log = (sweep / "0" / "train.log").read_text()
    assert [line.split(" at step ")[1].split(",")[0] for line in log.splitlines() if "saving" in line] == ["7", "9"]
    assert outcome(sweep / "0") == outcome(tmp_path / "whole" / "0")  # 18 steps, not 21
    assert "not resumable" not in done.stdout + done.stderr + log
