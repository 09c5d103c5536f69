"""Resuming: a killed run or sweep continues where it stopped, in the same folders and W&B runs.

The parts, each where it belongs:
- ``resume=true`` (``conf/train.yaml``) makes the output-folder resolver reuse the latest folder of the same
  command (``latest_folder``), so a sweep's jobs find their own folders again;
- each job then decides here (``plan``): finished before, skip; a ``checkpoints/last.ckpt`` left, continue from it;
  else start afresh. A job requeued by submitit (preempted or timed out) resumes without being asked;
- the resume checkpoint is written every ``callbacks.last_checkpoint.every_n_train_steps`` steps
  (``conf/callbacks/default.yaml``) and, on preemption, by ``poolbench.run.preemption``;
- no resume checkpoint is written at the last step of an epoch, which Lightning restores badly (``ResumePoint``);
- the model restores torch's RNG state before the next step and the data module skips the batches the
  epoch already trained (``PoolingClassifier.on_load_checkpoint``, ``EpochSeededSampler``), so a resumed
  job ends with exactly the metrics of an uninterrupted one.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import OmegaConf

from poolbench import cache
from poolbench.errors import DiskFullError, no_space
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


def epoch_ends_here(trainer: pl.Trainer) -> bool:
    """Whether the training step just done is the last of its epoch.

    No resume checkpoint is written there. Lightning (2.6) restores such a checkpoint as if the epoch had
    ended: that epoch's validation never runs, the next epoch is not counted as started (a second resume then
    trains it again from its first batch: 2401 steps instead of 2400, seen on SLURM), and the loaders drawn in
    between shift torch's random stream. Related upstream: Lightning-AI/pytorch-lightning#19815 (a batch-end
    checkpoint reruns the epoch), #18060 (the progress a batch-end checkpoint saves). One step later (or, at
    the end of training, after the last validation) the checkpoint restores exactly.
    """
    return bool(trainer.fit_loop.epoch_loop.batch_progress.is_last_batch)


class ResumePoint(ModelCheckpoint):
    """The periodic resume checkpoint (``callbacks.last_checkpoint``): ``ModelCheckpoint`` every
    ``every_n_train_steps`` steps, except at the last step of an epoch (see ``epoch_ends_here``)."""

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if not epoch_ends_here(trainer):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written whole or not at all: to a temporary name first, then renamed over the old one.

    A write that fails (a full disk) leaves the previous resume checkpoint as it was, so that ``resume=true``
    continues from it once there is space again; the error names the path and the free space.
    """

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.unique_name(path)
        try:
            super().save_checkpoint(checkpoint, tmp, storage_options)
            os.replace(tmp, path)
        except BaseException as err:
            tmp.unlink(missing_ok=True)
            if no_space(err):
                raise DiskFullError(path, "a checkpoint") from err
            raise
