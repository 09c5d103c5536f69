"""The run record: one schema for results.json that every reader and writer shares, old records included."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT
from hydra.utils import get_class

from poolbench.record import RecordError, RunRecord, find

OLD = ROOT / "experiments" / "pooling_ablation" / "runs" / "0"  # written before the package had its tiers


def test_a_record_round_trips_and_keeps_keys_it_does_not_know(tmp_path):
    data = {"status": "finished", "metrics": {"test/acc": 0.5}, "choices": {"pooling": "cls"}, "from_the_future": [1]}
    (tmp_path / "results.json").write_text(json.dumps(data))
    rec = RunRecord.load(tmp_path)
    assert rec.finished and rec.metrics == {"test/acc": 0.5} and rec.extra == {"from_the_future": [1]}
    rec.write(tmp_path / "again.json")
    again = json.loads((tmp_path / "again.json").read_text())
    assert {k: again[k] for k in data} == data and again["confusion_matrix"] is None


def test_records_written_by_earlier_versions_load_with_todays_module_paths():
    raw = json.loads((OLD / "results.json").read_text())
    assert raw["config"]["pooling"]["_target_"].startswith("poolbench.pooling.")  # the old module
    rec = RunRecord.load(OLD)
    assert rec.finished and rec.seed == raw["config"]["seed"] and rec.label_names == raw["confusion_matrix"]["labels"]
    assert get_class(rec.config["pooling"]["_target_"]).__module__ == "poolbench.model.poolers"
    assert get_class(rec.config["model"]["_target_"]).__name__ == "PoolingClassifier"
    assert rec.config["encoder"]["model"]["_target_"] == "poolbench.model.encoder.from_pretrained"


def test_a_broken_record_names_its_file_and_line(tmp_path):
    (tmp_path / "results.json").write_text('{"status": "finished",\n "metrics": {,}}')
    with pytest.raises(RecordError, match=r"results.json: not a valid run record \(line 2"):
        RunRecord.load(tmp_path)


def test_records_are_found_in_job_order_without_the_copies_wandb_keeps(tmp_path):
    for job in ("10", "2", "1"):
        (tmp_path / job).mkdir()
        (tmp_path / job / "results.json").write_text("{}")
    (tmp_path / "1" / "wandb" / "run" / "files").mkdir(parents=True)
    (tmp_path / "1" / "wandb" / "run" / "files" / "results.json").write_text("{}")
    assert [p.parent.name for p in find([tmp_path])] == ["1", "2", "10"]
    with pytest.raises(FileNotFoundError, match="no such run folder"):
        find([tmp_path / "missing"])
