"""A test-only Lightning callback that kills its own process with SIGKILL at a given step (no cleanup runs)."""

from __future__ import annotations

import os
import shutil
import signal

import lightning.pytorch as pl


class KillAtStep(pl.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class SignalAtStep(pl.Callback):
    """Sends ``signum`` (SIGUSR2: what SLURM and submitit send before a time limit) to its own process once, at
    ``step``: the first attempt is interrupted there, the requeued one runs on (``marker`` remembers)."""

    def __init__(self, step: int, marker: str, signum: int = int(signal.SIGUSR2)) -> None:
        self.step, self.marker, self.signum = step, marker, signum

    def on_train_batch_start(self, trainer, *args) -> None:
        if trainer.global_step == self.step and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os.kill(os.getpid(), self.signum)  # arrives during this step: the step finishes, then the save


class FailAtStep(pl.Callback):
    """Raises at ``step`` (a job that fails mid-training); ``step=-1`` never fails."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError(f"a test failure at step {self.step}")


class FillDiskAtStep(pl.Callback):
    """Once (``marker`` remembers), at ``step``: fills the file system of ``path`` with that one file, leaving
    ``leave`` bytes (room for a small record, none for a checkpoint)."""

    def __init__(self, step: int, path: str, marker: str, leave: int = 200_000) -> None:
        self.step, self.path, self.marker, self.leave = step, path, marker, leave

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            free = shutil.disk_usage(os.path.dirname(self.path)).free
            with open(self.path, "wb") as f:
                f.write(b"\0" * max(0, free - self.leave))
