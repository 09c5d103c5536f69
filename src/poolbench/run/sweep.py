"""Sweep-level behaviour, as a Hydra callback (``conf/hydra/default.yaml``).

- Before the first job trains, every job's config is composed and checked; one message lists every problem.
- On a SLURM cluster without accounting, submitit's status poll (``sacct``) fails every few seconds and logs a
  warning each time; here that is said once (submitit then reads the jobs' states from their result files).
- After the last job, a one-screen summary of what finished and what failed; the exit status is non-zero
  when anything failed. Jobs themselves keep going past a failed one (see ``poolbench.run.job.Job.keep_going``).
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from poolbench import record
from poolbench.record import RunRecord
from poolbench.run.checks import ConfigError, problems

log = logging.getLogger(__name__)


def expand_sweep(task_overrides: list[str]) -> list[list[str]]:
    """The override list of every job of a basic sweep (the cartesian product of the swept values).

    Uses the basic sweeper's own expansion (a Hydra internal, pinned by hydra-core<1.4) so that the jobs
    checked are exactly the jobs that will run; ``glob(...)`` choices need the running Hydra's config loader.
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    loader = GlobalHydra.instance().config_loader() if GlobalHydra.instance().is_initialized() else None
    parsed = OverridesParser.create(config_loader=loader).parse_overrides(task_overrides)
    batches = BasicSweeper.split_arguments(parsed, max_batch_size=None)
    return [list(job) for batch in batches for job in batch]


def check_sweep(config_name: str, task_overrides: list[str]) -> None:
    """Compose and check every job of the sweep; raise ``ConfigError`` naming each bad job and setting."""
    from hydra import compose

    report = []
    for job in expand_sweep(task_overrides):
        try:
            found = problems(compose(config_name, overrides=job))
        except Exception as err:  # an unknown group choice, a bad override, ...
            found = [f"{type(err).__name__}: {err}".strip()]
        if found:
            report.append(f"job {' '.join(job) or '(defaults)'}:\n    " + "\n    ".join(found))
    if report:
        raise ConfigError(
            f"{len(report)} job(s) of this sweep have invalid configs; nothing was run.\n" + "\n".join(report)
        )


def summarize(sweep_dir: Path) -> tuple[str, int, int]:
    """A one-screen table of the sweep's jobs from their records; the number that did not finish, and how many of
    those failed with the user's error (config, data, encoder)."""
    rows, bad, users = [], 0, 0
    jobs = sorted(
        (p for p in sweep_dir.iterdir() if p.is_dir() and (p / record.RESULTS).exists()),
        key=lambda p: (len(p.name), p.name),
    )
    for job in jobs:
        rec = RunRecord.load(job)
        if rec.status == "checked":  # check_only=true
            detail = "checked: no problem found"
        elif rec.finished:
            m = rec.metrics
            detail = f"test/acc={m.get('test/acc', math.nan):.4f} test/f1_macro={m.get('test/f1_macro', math.nan):.4f}"
        else:
            bad += 1
            users += bool(rec.user_error)
            error = rec.first_error_line()
            detail = "\n        " + (error if len(error) <= 300 else error[:150] + " ... " + error[-140:])
        rows.append(f"  {job.name:>4}  {rec.status:<9} {rec.overrides or '(defaults)'}  {detail}")
    head = f"sweep {sweep_dir}: {len(jobs) - bad} finished, {bad} failed or unfinished"
    return "\n".join([head, *rows]), bad, users


class OnceForSacct(logging.Filter):
    """Turns submitit's repeated "Bypassing sacct error" warnings into one line that says what it means."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = False

    def filter(self, rec: logging.LogRecord) -> bool:
        if "Bypassing sacct error" not in rec.getMessage():
            return True
        if self.seen:
            return False
        self.seen = True
        rec.msg, rec.args = (
            (
                "sacct does not answer on this cluster (no SLURM accounting): submitit reads job states from their "
                "result files instead; this is said once"
            ),
            None,
        )
        return True


def quiet_sacct() -> None:
    submitit_log = logging.getLogger("submitit")
    if not any(isinstance(f, OnceForSacct) for f in submitit_log.filters):
        submitit_log.addFilter(OnceForSacct())


class SweepCallback(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        quiet_sacct()
        try:
            check_sweep(config.hydra.job.config_name, list(config.hydra.overrides.task))
        except ConfigError as err:  # the user's to fix: the message, no traceback, exit status 2
            print(f"poolbench: {err}", file=sys.stderr)
            raise SystemExit(2) from None

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        text, bad, users = summarize(sweep_dir)
        print(text, flush=True)
        if bad:  # 2: every failure is the user's to fix (config, data, encoder); 1: something else
            raise SystemExit(2 if users == bad else 1)
