"""The benchmark says what it measured: the device it ran on, and an ablation estimate taken from the config."""

from __future__ import annotations

import importlib.util
import shutil
from types import SimpleNamespace

import pytest
import torch
from conftest import ROOT


@pytest.fixture
def bench():
    spec = importlib.util.spec_from_file_location("bench", ROOT / "benchmarks" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_results_name_the_device_they_were_measured_on(bench):
    name = bench.device_name()
    if torch.cuda.is_available():
        assert name == f"cuda: {torch.cuda.get_device_name(0)}" and bench.device() == "cuda"
    else:
        assert name.startswith("cpu: ") and name[5:] == bench.machine()["cpu"] and bench.device() == "cpu"
        assert bench.machine()["gpu"] is None
    bench.sync()  # a no-op on the CPU, a wait on CUDA


def test_the_ablation_estimate_follows_the_config_it_estimates(bench, tmp_path, monkeypatch):
    dm = SimpleNamespace(splits={"train": range(1000), "val": range(100), "test": range(200)})
    measured = {"seconds": 10.0, "n": 100, "dm": dm}  # 0.1 s a training text
    default = bench.ablation_hours(**measured)
    pooling_configs = len(list((ROOT / "conf" / "pooling").glob("*.yaml")))
    epochs = 2  # conf/trainer/default.yaml
    per_job = epochs * (100 + 0.1 / 3 * 100) + 0.1 / 3 * 200 + bench.STARTUP_S
    assert default == pytest.approx(3 * pooling_configs * per_job / 3600)

    conf = tmp_path / "conf"  # the same study with two poolings and one epoch
    (conf / "pooling").mkdir(parents=True)
    for name in ("cls", "mean"):
        shutil.copy(ROOT / "conf" / "pooling" / f"{name}.yaml", conf / "pooling")
    (conf / "trainer").mkdir()
    (conf / "trainer" / "default.yaml").write_text("max_epochs: 1\n")
    monkeypatch.setattr(bench, "ROOT", tmp_path)
    per_job = (100 + 0.1 / 3 * 100) + 0.1 / 3 * 200 + bench.STARTUP_S
    assert bench.ablation_hours(**measured) == pytest.approx(3 * 2 * per_job / 3600)
