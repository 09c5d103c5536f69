"""Resuming: a killed run or sweep continues where it stopped, in the same folders and W&B runs.

The parts, each where it belongs:
- ``resume=true`` (``conf/train.yaml``) makes the output-folder resolver reuse the latest folder of the same
  command (``latest_folder``), so a sweep's jobs find their own folders again;
- each job then decides here (``plan``): finished before, skip; a ``checkpoints/last.ckpt`` left, continue from it;
  else start afresh. A job requeued by submitit (preempted or timed out) resumes without being asked;
- the resume checkpoint is written every ``callbacks.last_checkpoint.every_n_train_steps`` steps
  (``conf/callbacks/default.yaml``) and, on preemption, by ``poolbench.run.preemption``;
- the model restores torch's RNG state before the next step and the data module skips the batches the
  epoch already trained (``PoolingClassifier.on_load_checkpoint``, ``EpochSeededSampler``), so a resumed
  job ends with exactly the metrics of an uninterrupted one.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from poolbench.record import RunRecord

log = logging.getLogger(__name__)


def under_submitit() -> bool:
    """Whether this job runs under a submitit launcher (SLURM, local_processes), which requeues it."""
    return bool(os.environ.get("SUBMITIT_EXECUTOR"))


@dataclass
class ResumePlan:
    previous: RunRecord | None = None  # the record a previous attempt left in this folder
    checkpoint: str | None = None  # continue from this checkpoint

    @property
    def finished_before(self) -> bool:
        return self.previous is not None and self.previous.finished


def plan(resume: bool, output_dir: Path) -> ResumePlan:
    """What this job does with what an earlier attempt left in ``output_dir``."""
    if not (resume or under_submitit()) or not (output_dir / "results.json").is_file():
        return ResumePlan()
    previous = RunRecord.load(output_dir)
    checkpoint = output_dir / "checkpoints" / "last.ckpt"
    return ResumePlan(previous, str(checkpoint) if checkpoint.is_file() else None)


def latest_folder(root: Path, kind: str, task: list[str]) -> Path | None:
    """The latest folder under ``root`` (``outputs`` or ``multirun``) made by the command with overrides
    ``task`` (``resume`` aside), or ``None``."""
    same = _without_resume(task)
    for folder in sorted(root.glob("*/*"), reverse=True):
        if _command_of(folder, kind) == same:
            return folder
    return None


def _command_of(folder: Path, kind: str) -> list[str] | None:
    """The overrides (``resume`` aside) of the run or sweep that made ``folder``."""
    made_by = folder / ("multirun.yaml" if kind == "sweep" else ".hydra/overrides.yaml")
    if not made_by.is_file():
        return None
    loaded = OmegaConf.load(made_by)
    task = loaded.hydra.overrides.task if kind == "sweep" else loaded
    return _without_resume(str(a) for a in OmegaConf.to_container(task))


def _without_resume(task) -> list[str]:
    return sorted(a for a in task if not a.startswith("resume="))
