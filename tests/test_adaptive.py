"""The adaptive-seeds sweeper: seeds go where the verdict is still open, never past max_seeds, and a resumed
search reruns nothing that finished."""

from __future__ import annotations

import json

import pytest
from conftest import clean_env, read_record, synthetic_rows, train_cli, wandb_summary, write_csv

pytestmark = pytest.mark.slow


def test_seeds_go_only_to_open_rows_and_a_resumed_search_reruns_nothing(tmp_path, cache_dir):
    """Truth known by construction: lr=1e-9 does not learn (chance level: clearly worse); lr=1e-3 and 1.1e-3 learn
    alike (close: more seeds; futility off, so that they go to max_seeds). Run with the joblib launcher, two jobs at a
    time."""
    data = {
        s: write_csv(tmp_path / f"{s}.csv", synthetic_rows(n, i))
        for i, (s, n) in enumerate((("train", 300), ("val", 100), ("test", 300)))
    }
    sweep = tmp_path / "sweep"
    args = [
        "-m",
        "data=csv",
        *(f"data.{s}={p}" for s, p in data.items()),
        "trainer.max_epochs=3",
        "model.lr=1e-3,1.1e-3,1e-9",
        "model.head_lr=null",  # one rate for everything: lr=1e-9 learns nothing
        "hydra/sweeper=adaptive_seeds",
        "hydra.sweeper.min_seeds=2",
        "hydra.sweeper.max_seeds=4",
        "hydra.sweeper.futility=0",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        f"hydra.sweep.dir={sweep}",
    ]
    env = clean_env(tmp_path, cache_dir)
    done = train_cli(args, env)
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = sorted((p for p in sweep.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    seeds: dict[float, list[int]] = {}
    for job in jobs:
        record = read_record(job)
        assert record["status"] == "finished"
        seeds.setdefault(record["config"]["model"]["lr"], []).append(record["config"]["seed"])
    assert seeds[1e-9] == [1, 2]  # clearly worse after the first round: no more seeds
    assert sorted(seeds[1e-3]) == sorted(seeds[1.1e-3]) == [1, 2, 3, 4]  # close: seeds up to max_seeds, paired
    assert len({r["host"]["pid"] for r in map(read_record, jobs)}) == 2  # joblib's two workers
    design, *rounds = [json.loads(line) for line in (sweep / "decisions.jsonl").read_text().splitlines()]
    assert design["design"]["min_seeds"] == 2 and design["design"]["futility"] == 0
    assert [r.get("round") for r in rounds[:-1]] == [1, 2, 3] and rounds[-1]["jobs"] == len(jobs) == 10
    assert [r["looks"]["all"]["seeds"] for r in rounds[:-1]] == [2, 3, 4]  # alpha spent look by look
    assert sum(r["looks"]["all"]["alpha_spent"] for r in rounds[:-1]) == pytest.approx(0.05)
    assert rounds[-1]["fixed_grid_jobs"] == 12
    first = {row["row"]: row for row in rounds[0]["rows"]}
    assert first["model.lr=1e-09"]["verdict"] == "clearly worse" and first["model.lr=1e-09"]["next"] == "decided"
    assert {j["row"] for j in rounds[0]["launched_next"]} == {"model.lr=0.001", "model.lr=0.0011"}
    assert all(row["next"] == "max_seeds" for row in rounds[2]["rows"] if row["row"] != "model.lr=1e-09")
    assert (sweep / "table.md").read_text().count("- **Verdict.**") == 1 and "a fixed 4-seed grid: 12" in done.stdout
    # W&B (offline): the jobs' runs and a summary run with the table and every round's decisions, in one folder
    runs = [wandb_summary(run) for run in (sweep / "wandb").glob("offline-run-*")]
    assert sorted(r["name"] for r in runs if r["name"] != "ablation-table") == sorted(
        f"model.lr={lr},seed={s}"
        for lr, seeds in (("0.001", 4), ("0.0011", 4), ("1e-09", 2))
        for s in range(1, seeds + 1)
    )
    (summary,) = [r for r in runs if r["name"] == "ablation-table"]
    assert {"ablation/table", "ablation/decisions"} <= set(summary["summary"])

    decisions = (sweep / "decisions.jsonl").read_text()
    again = train_cli([*args, "resume=true"], env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("finished before, skipped") == 10  # every job was reused, none rerun
    assert sorted(p.name for p in sweep.iterdir() if p.name.isdigit()) == sorted(p.name for p in jobs)
    assert (sweep / "decisions.jsonl").read_text() == decisions  # the same rounds, replayed
