"""Processes of one job: which rank this is, how many threads it takes, and DDP's re-launch of its ranks."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

RESUME_ENV = "POOLBENCH_RESUME_FROM"  # rank zero's resume decision, read by the ranks DDP starts after it
DDP_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")  # set by Lightning's launcher


def is_rank_zero() -> bool:
    """Whether this process is rank zero of a distributed run (or runs alone), from the launchers' variables.

    Read before the Trainer exists: Lightning's DDP launcher starts the other ranks as ``python train.py ...``
    with LOCAL_RANK (and NODE_RANK) set; SLURM sets SLURM_PROCID; torchrun sets RANK.
    """
    for name in ("RANK", "SLURM_PROCID", "NODE_RANK", "LOCAL_RANK"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return False
    return True


def resume_point(own_choice: str | None) -> str | None:
    """The checkpoint this rank resumes from: its own choice on rank zero; on the other ranks, rank zero's
    (they start after it decided, and would find its new ``results.json`` instead of the old one)."""
    if is_rank_zero():
        os.environ[RESUME_ENV] = own_choice or ""
        return own_choice
    return os.environ.get(RESUME_ENV) or None


def set_threads(hydra_cfg) -> int:
    """Jobs that share a machine do not oversubscribe its cores: with hydra/launcher=joblib each job gets
    cores // n_jobs torch threads; with a submitit launcher (slurm, local_processes), its cpus_per_task."""
    import torch

    launcher = hydra_cfg.get("launcher") or {}
    target = str(launcher.get("_target_", ""))
    if "JoblibLauncher" in target:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        n_jobs = int(launcher.get("n_jobs") or 1)
        n_jobs = cores + 1 + n_jobs if n_jobs < 0 else n_jobs  # joblib's convention: -1 = all cores
        torch.set_num_threads(max(1, cores // max(1, min(n_jobs, cores))))
    elif "submitit" in target and launcher.get("cpus_per_task"):
        torch.set_num_threads(int(launcher.cpus_per_task))
    return torch.get_num_threads()


@contextlib.contextmanager
def job_ranks(hydra_cfg, output_dir: Path, distributed: bool):
    """Fit and test of one DDP job; the next job of a sweep starts from a clean slate.

    Works around Lightning's re-launch of DDP ranks under Hydra (Lightning-AI/pytorch-lightning#11300, see
    also facebookresearch/hydra#2070): in a multirun, Lightning starts the other ranks as ``sys.argv`` +
    ``hydra.run.dir=<run.dir>``, that is the whole sweep again, in another folder. Here they get this job's
    overrides, in RUN mode, in its folder. Afterwards the process group and the launcher's environment
    variables are removed, so that the next job launches its own ranks instead of waiting for the last job's.
    """
    if not distributed:
        yield
        return
    from hydra.types import RunMode
    from omegaconf import read_write

    argv, run_dir, saved_env = sys.argv, hydra_cfg.run.dir, {k: os.environ.get(k) for k in DDP_ENV}
    if hydra_cfg.mode == RunMode.MULTIRUN and is_rank_zero():
        sys.argv = [sys.argv[0], *hydra_cfg.overrides.task, "hydra.mode=RUN"]
        with read_write(hydra_cfg):
            hydra_cfg.run.dir = str(output_dir)
    try:
        yield
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        sys.argv = argv
        with read_write(hydra_cfg):
            hydra_cfg.run.dir = run_dir
