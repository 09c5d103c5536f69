"""Preempted or timed-out cluster jobs resume where they stopped (submitit: SLURM, or local processes).

submitit sends USR2 to a job shortly before its time limit or when it is preempted; its handler then requeues
the job. ``Preemption`` puts itself in front of that handler: the signal only raises a flag, the current
training step finishes, ``checkpoints/last.ckpt`` is written (the same full state as the periodic resume
checkpoint), and then submitit's handler runs and requeues. The requeued job finds its unfinished
``results.json`` and that checkpoint in the same folder and resumes (``poolbench.run.resume``).

Declared in ``conf/callbacks/default.yaml``; it does nothing outside submitit (nobody would requeue the job).
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import lightning.pytorch as pl

from poolbench.run.resume import under_submitit

log = logging.getLogger(__name__)

SIGNAL = signal.SIGUSR2  # submitit's default preemption / time-out signal (SUBMITIT_PREEMPT_SIGNAL)


class Preemption(pl.Callback):
    """Save ``last.ckpt`` at the end of the training step during (or after the validation during) which the
    signal arrived, then hand over to submitit."""

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
        self._save_and_hand_over(trainer)  # a signal during the last validation
        self._restore()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._fitting = False
        self._restore()

    def _save_and_hand_over(self, trainer: pl.Trainer) -> None:
        if not self.armed:
            return
        pending = self.pending is not None
        if trainer.world_size > 1:  # DDP: every rank saves at the same step, whichever got the signal first
            pending = trainer.strategy.reduce_boolean_decision(pending, all=False)
        if pending:
            self.pending = self.pending or (SIGNAL, None)
            log.warning("preempted or timed out: saving %s at step %d, then requeueing",
                        self.checkpoint_path, trainer.global_step)  # fmt: skip
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
