"""Preempted or timed-out cluster jobs resume where they stopped (submitit: SLURM, or local processes).

submitit sends USR2 to a job shortly before its time limit or when it is preempted; its handler then requeues
the job. ``Preemption`` puts itself in front of that handler: the signal only raises a flag, the current
training step finishes, ``checkpoints/last.ckpt`` is written (the same full state as the periodic resume
checkpoint), and then submitit's handler runs and requeues. The requeued job finds its unfinished
``results.json`` and that checkpoint in the same folder and resumes (``poolbench.run.resume``).

Declared in ``conf/callbacks/default.yaml``; it does nothing outside submitit (nobody would requeue the job).

One requeue mechanism only. Lightning has its own SLURM auto-requeue (``SLURMEnvironment(auto_requeue=True)``,
on by default whenever it detects SLURM: a USR1 handler that saves an "hpc" checkpoint and calls ``scontrol
requeue``); with submitit's requeue too, one signal can requeue a job twice or save two different checkpoints
(Lightning-AI/pytorch-lightning#6389; signal handling: #14610, #21404). ``cluster_plugins`` switches Lightning's
off under SLURM, so that submitit's (with this callback in front of it) is the only one. Requeueing sends SIGTERM
to every process of the job (the W&B service among them): closing the W&B run may then fail, which
``poolbench.tracking.finish`` logs without hiding the job's exit (that would make submitit report the job as done
while SLURM runs it again).
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import lightning.pytorch as pl

from poolbench.run.resume import epoch_ends_here, under_submitit

log = logging.getLogger(__name__)

SIGNAL = signal.SIGUSR2  # submitit's default preemption / time-out signal (SUBMITIT_PREEMPT_SIGNAL)


def cluster_plugins() -> list:
    """The Trainer's plugins: under SLURM, Lightning's cluster environment without its own auto-requeue."""
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    # what SLURMEnvironment.detect() reads (without its warning on machines that merely have srun installed)
    under_slurm = "SLURM_NTASKS" in os.environ and os.environ.get("SLURM_JOB_NAME") not in ("bash", "interactive")
    return [SLURMEnvironment(auto_requeue=False)] if under_slurm else []


class Preemption(pl.Callback):
    """Save ``last.ckpt`` at the end of the training step during (or after the validation during) which the
    signal arrived, then hand over to submitit. At an epoch's last step the save waits one step (after that
    epoch's validation): a checkpoint there would not resume exactly (``poolbench.run.resume.epoch_ends_here``)."""

    def __init__(self, checkpoint_path: str | Path, armed: bool | None = None) -> None:
        self.checkpoint_path = Path(checkpoint_path)
        self.armed = under_submitit() if armed is None else armed  # only submitit requeues a job
        self.pending: tuple | None = None
        self._previous = None
        self._fitting = False

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.armed:
            return
        self._previous = signal.getsignal(SIGNAL)
        signal.signal(SIGNAL, self._on_signal)
        self._fitting = True

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx) -> None:
        self._save_and_hand_over(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fitting = False
        self._save_and_hand_over(trainer, can_wait=False)  # a signal during the last validation
        self._restore()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._fitting = False
        self._restore()

    def _save_and_hand_over(self, trainer: pl.Trainer, can_wait: bool = True) -> None:
        if not self.armed:
            return
        pending = self.pending is not None and not (can_wait and epoch_ends_here(trainer))
        if trainer.world_size > 1:  # DDP: every rank saves at the same step, whichever got the signal first
            pending = trainer.strategy.reduce_boolean_decision(pending, all=False)
        if pending:
            self.pending = self.pending or (SIGNAL, None)
            log.warning(
                "preempted or timed out: saving %s at step %d, then requeueing",
                self.checkpoint_path,
                trainer.global_step,
            )
            trainer.save_checkpoint(self.checkpoint_path)
            self._hand_over()

    def _on_signal(self, signum, frame) -> None:
        self.pending = (signum, frame)
        if not self._fitting:  # outside training (set-up, test): nothing to save first
            self._hand_over()

    def _hand_over(self) -> None:
        signum, frame = self.pending
        previous = self._previous
        self._restore()
        if callable(previous):
            previous(signum, frame)  # submitit: requeue, then exit

    def _restore(self) -> None:
        if self._previous is not None:
            signal.signal(SIGNAL, self._previous)
            self._previous = None
