"""Shared fixtures: the real config composed with fast CPU overrides, tiny encoders and small in-memory data."""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path

import pytest

# no hub look-ups (they retry for ~24 s offline) and no W&B account in tests
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.pop("WANDB_API_KEY", None)

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

WORDS = {  # label -> words that make the class learnable from the text
    "very_negative": ["awful", "horrible", "worst", "hate"],
    "negative": ["bad", "dull", "weak", "boring"],
    "positive": ["good", "nice", "fine", "pleasant"],
    "very_positive": ["amazing", "wonderful", "best", "love"],
}
FILLER = ["the", "movie", "was", "really", "quite", "a", "story", "and", "plot", "it"]


def synthetic_rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = list(WORDS)[i % len(WORDS)]
        words = rng.choices(FILLER, k=rng.randint(2, 12)) + [rng.choice(WORDS[label])]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label})
    return rows


def write_csv(path: Path, rows: list[dict], delimiter: str = ",") -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


def data_overrides(csv_data: dict[str, Path]) -> list[str]:
    """The overrides that point data=csv at the csv_data files."""
    return ["data=csv", *(f"data.{s}={p}" for s, p in csv_data.items())]


@pytest.fixture
def csv_data(tmp_path: Path) -> dict[str, Path]:
    """Small train/val/test CSV files with four learnable classes."""
    folder = tmp_path / "data"
    folder.mkdir()
    return {
        split: write_csv(folder / f"{split}.csv", synthetic_rows(n, seed))
        for split, n, seed in (("train", 96, 0), ("val", 32, 1), ("test", 32, 2))
    }


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("poolbench-cache")


@pytest.fixture
def compose(tmp_path: Path, cache_dir: Path):
    """compose(overrides) -> the real train config with fast CPU overrides, outputs under tmp_path."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import poolbench  # noqa: F401  (resolvers)

    def _compose(overrides: list[str] = (), fast: bool = True):
        fast_overrides = [
            "encoder=tiny_bert",
            "logger=none",
            "trainer.max_epochs=1",
            "trainer.accelerator=cpu",
            "trainer.enable_progress_bar=false",
            "trainer.enable_model_summary=false",
            "data.batch_size=16",
            f"paths.cache_dir={cache_dir}",
            f"paths.output_dir={tmp_path / 'out'}",
        ]
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return hydra_compose(
                "train", overrides=[*(fast_overrides if fast else []), *overrides], return_hydra_config=True
            )

    yield _compose
    GlobalHydra.instance().clear()


@pytest.fixture
def run_job(compose):
    """run_job(overrides) -> (results dict, output folder): one in-process job like `python train.py`."""
    import json

    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from poolbench.train import run

    def _run(overrides: list[str]):
        cfg = compose(overrides)
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = cfg.paths.output_dir
            cfg.hydra.runtime.cwd = str(ROOT)
            cfg.hydra.job.override_dirname = ",".join(overrides)
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            del cfg["hydra"]  # a job's config has no hydra node; HydraConfig holds it
        out = Path(cfg.paths.output_dir)
        try:
            run(cfg)
        finally:
            HydraConfig.instance().cfg = None
        return json.loads((out / "results.json").read_text()), out

    return _run
