"""Shared helpers and fixtures: the real config with `debug=smoke` (tiny random encoder, one CPU epoch), small
learnable data files, `python train.py` in a subprocess, W&B runs read back. Test modules import only these."""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
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


def clean_env(tmp_path: Path, cache_dir: Path, **extra: str) -> dict:
    """The environment of a `python train.py` subprocess: no W&B key nor netrc (so W&B runs offline), the shared
    cache, and tests/ importable (for test-only callbacks such as killer.KillAtStep)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(tmp_path / "home"), POOLBENCH_CACHE=str(cache_dir), **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), env.get("PYTHONPATH", "")])
    return env


def train_cli(args: list[str], env: dict, cwd: Path = ROOT, timeout: int = 600) -> subprocess.CompletedProcess:
    """`python train.py debug=smoke ARGS` as a user runs it (`-m` anywhere in ARGS makes it a sweep)."""
    cmd = [sys.executable, str(ROOT / "train.py"), "debug=smoke", *(a for a in args if a != "-m")]
    cmd += ["-m"] if "-m" in args else []  # Hydra takes its flags before or after the overrides, not among them
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def read_record(folder: Path) -> dict:
    """A job's results.json, as a user reads it."""
    return json.loads((folder / "results.json").read_text())


def sweep_records(sweep: Path) -> list[dict]:
    """The records of a sweep's jobs, in job order."""
    return [read_record(sweep / str(i)) for i in range(len(list(sweep.glob("*/results.json"))))]


def wandb_summary(run_dir: Path) -> dict:
    """An offline W&B run's config, summary and state, read back with W&B's own `wandb leet inspect`."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / "wandb"), "leet", "inspect", "--summary", "--json", str(run_dir)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def offline_wandb_run(sweep: Path, job: Path) -> Path:
    """The offline W&B run of a sweep's job: in the sweep's one W&B folder, SWEEP/wandb/offline-run-*-<id>."""
    (run,) = sorted((sweep / "wandb").glob(f"offline-run-*-{read_record(job)['wandb_id']}"))[-1:]
    return run


def wandb_ids(folder: Path) -> set[str]:
    """The W&B run ids in a folder's wandb/ (offline runs are folders offline-run-<time>-<id>)."""
    return {p.name.rsplit("-", 1)[1] for p in (folder / "wandb").glob("offline-run-*")}


def one_wandb_run_each(sweep: Path) -> set[str]:
    """Every job logged into its own W&B run, and all of them are in the sweep's one W&B folder."""
    ids = [r["wandb_id"] for r in sweep_records(sweep)]
    assert len(set(ids)) == len(ids) and set(ids) == wandb_ids(sweep), (ids, wandb_ids(sweep))
    assert not any((sweep / str(i) / "wandb").exists() for i in range(len(ids)))
    return set(ids)


def single_process_val_f1(run_dir: Path) -> float:
    """The validation macro-F1 of a run's best checkpoint, evaluated again in this one process on the whole
    validation set (a DDP run's synced number must equal it)."""
    import lightning.pytorch as pl
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from poolbench.analysis.explain import load_trained

    model, tokenizer, _ = load_trained(run_dir)
    cfg = OmegaConf.create(read_record(run_dir)["config"])
    datamodule = instantiate(cfg.data, tokenizer=tokenizer, seed=cfg.seed)
    datamodule.prepare_data()
    datamodule.setup("fit")
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        precision="32-true",
    )
    return trainer.validate(model, datamodule=datamodule, verbose=False)[0]["val/f1_macro"]


def tiny_bert(**sizes):
    """The tiny random BERT of ``encoder=tiny_bert`` (NOT pretrained), built from its YAML (the one home of its
    sizes), with ``sizes`` changed."""
    import yaml
    from hydra.utils import instantiate

    return instantiate({**yaml.safe_load((CONF / "encoder" / "tiny_bert.yaml").read_text())["model"], **sizes})


def pooler_configs() -> dict[str, type]:
    """Every `pooling=` choice (conf/pooling/*.yaml) and the class its `_target_` names."""
    import yaml
    from hydra.utils import get_class

    return {
        p.stem: get_class(yaml.safe_load(p.read_text())["_target_"]) for p in sorted((CONF / "pooling").glob("*.yaml"))
    }


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
def slurm(tmp_path_factory) -> dict:
    """A real one-node SLURM cluster (``tests/slurm_cluster.py``), started once for the session and stopped at
    its end. Only with POOLBENCH_SLURM=1 (``.ci/run`` sets it: CI runs as root and installs slurm-wlm and munge
    with apt-get); then a cluster that cannot start fails the tests instead of skipping them."""
    if os.environ.get("POOLBENCH_SLURM") != "1":
        pytest.skip("SLURM tests run with POOLBENCH_SLURM=1 (root, or slurm-wlm + munge installed): see README")
    import slurm_cluster

    folder = Path("/tmp/poolbench-test-slurm")  # fixed: its daemons' ports are fixed too
    try:
        env = slurm_cluster.start(folder)
    except slurm_cluster.Unavailable as err:
        pytest.fail(f"POOLBENCH_SLURM=1 but no SLURM test cluster: {err}")
    yield env
    slurm_cluster.stop(folder)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("poolbench-cache")


@pytest.fixture
def compose(tmp_path: Path, cache_dir: Path):
    """compose(overrides) -> the real train config with debug=smoke and logger=none, outputs under tmp_path."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import poolbench  # noqa: F401  (resolvers)

    def _compose(overrides: list[str] = (), smoke: bool = True):
        local = [f"paths.cache_dir={cache_dir}", f"paths.output_dir={tmp_path / 'out'}"]
        if smoke:
            local = ["debug=smoke", "logger=none", *local]
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return hydra_compose("train", overrides=[*local, *overrides], return_hydra_config=True)

    yield _compose
    GlobalHydra.instance().clear()


@pytest.fixture
def run_job(compose):
    """run_job(overrides) -> (results dict, output folder): one in-process job like `python train.py`."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from poolbench.run.job import run

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
        return read_record(out), out

    return _run
