"""One job: decide whether to resume, open the record, build, fit and test, write the outputs, close."""

from __future__ import annotations

import logging
import math
import os
import shlex
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from poolbench import record, tracking
from poolbench.errors import DiskFullError, no_space, user_error
from poolbench.record import RunRecord
from poolbench.run import distributed, resume
from poolbench.run.build import build
from poolbench.run.checks import validate
from poolbench.run.learned import found_in
from poolbench.run.preflight import preflight

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> float | None:
    """Run one job; return ``cfg.optimized_metric`` for sweepers. Always leaves a ``results.json``.

    Under DDP every rank runs this; only rank zero writes the record, the predictions and the W&B run.
    """
    job = Job.current(cfg)
    job.threads = distributed.set_threads(job.hydra)  # jobs sharing a machine do not oversubscribe its cores
    if cfg.check_only:  # load and check everything, train nothing
        return preflight(cfg, job)
    plan = resume.plan(cfg.resume, job.output_dir) if job.rank_zero else resume.ResumePlan()
    if plan.finished_before:
        return job.skip(plan.previous)
    checkpoint = distributed.resume_point(plan.checkpoint)
    rec = job.open_record(plan.previous, checkpoint)
    job.save(rec)
    started, loggers = time.time(), []
    try:
        validate(cfg)
        pl.seed_everything(cfg.seed, workers=True)
        loggers = job.open_loggers(rec)
        datamodule, model, trainer = build(cfg, job.choices, loggers)
        job.note_built(rec, model, trainer)
        job.save(rec)
        with distributed.job_ranks(job.hydra, job.output_dir, trainer.world_size > 1):
            rec.metrics, rec.best_checkpoint, rec.timings = fit_and_test(trainer, model, datamodule, checkpoint)
        if job.rank_zero:
            rows = write_predictions(job.output_dir, model, datamodule)
            finish_record(rec, job.output_dir, model, datamodule, trainer)
            track_outputs(loggers, rows, model, datamodule, job.output_dir, rec.learned)
            announce(rec, job)
        return rec.metrics.get(cfg.optimized_metric)
    except Exception as err:
        err = disk_full(err, job.output_dir)
        rec.status, rec.error, rec.traceback = "failed", f"{type(err).__name__}: {err}", traceback.format_exc()
        return job.keep_going(err, rec)
    except BaseException as err:  # interrupted (Ctrl-C, SystemExit): recorded, never swallowed
        rec.status, rec.error = "interrupted", f"{type(err).__name__}: {err}"
        raise
    finally:
        rec.timings["total_seconds"] = time.time() - started
        job.save(rec, last=True)
        if job.rank_zero:
            tracking.finish(rec.finished, job.output_dir)


def disk_full(err: Exception, output_dir: Path) -> Exception:
    """A full disk met by a write of Lightning's or a library's, as the one-line ``DiskFullError``."""
    if no_space(err) and user_error(err) is None:
        return DiskFullError(getattr(err, "filename", None) or output_dir, "the job's outputs")
    return err


def fit_and_test(trainer: pl.Trainer, model, datamodule, checkpoint: str | None) -> tuple[dict, str | None, dict]:
    """Fit (from ``checkpoint`` when resuming), then test the checkpoint with the best ``val/f1_macro`` (the last
    weights when none was saved). Returns the metrics, the best checkpoint and the timings."""
    t0 = time.time()
    trainer.fit(model, datamodule=datamodule, ckpt_path=checkpoint, weights_only=True)
    fit_seconds = time.time() - t0
    callback = trainer.checkpoint_callback
    best = callback.best_model_path if callback else ""
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if not k.startswith("test/")}
    t0 = time.time()
    trainer.test(model, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
    timings = {"fit_seconds": fit_seconds, "test_seconds": time.time() - t0}
    metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    if best:
        metrics["val/f1_macro_best"] = float(callback.best_model_score)
    return metrics, best or None, timings


def write_predictions(output_dir: Path, model, datamodule) -> list[dict]:
    """The test predictions, one row per test example in ``idx`` order, with class names and texts."""
    names, texts = datamodule.label_names, datamodule.raw["test"].texts
    rows = [
        {**r, "label_name": names[r["label"]], "pred_name": names[r["pred"]], "text": texts[r["idx"]]}
        for r in sorted(model.test_predictions, key=lambda r: r["idx"])
    ]
    record.write_predictions(output_dir, rows)
    return rows


def finish_record(rec: RunRecord, output_dir: Path, model, datamodule, trainer: pl.Trainer) -> None:
    """The record of a finished job (written by the caller), and the resume checkpoint gone: only resuming needs it."""
    (output_dir / "checkpoints" / "last.ckpt").unlink(missing_ok=True)
    rec.status, rec.epochs, rec.global_step = "finished", trainer.current_epoch, trainer.global_step
    names = datamodule.label_names
    rec.confusion_matrix = {"labels": names, "rows_true_cols_pred": model.test_confusion_matrix.tolist()}
    rec.num_examples = {s: len(datamodule.splits[s]) for s in datamodule.splits}
    rec.data_checksums = datamodule.data_checksums
    rec.learned = found_in(trainer)


def track_outputs(loggers: list, rows: list[dict], model, datamodule, output_dir: Path, learned: dict | None) -> None:
    """To W&B: the confusion matrix, what the learned parts did, and what attention-type poolers and
    ``layers=scalar_mix`` learned on a few test texts."""
    from poolbench.analysis.explain import record_examples

    names, texts = datamodule.label_names, datamodule.raw["test"].texts
    tracking.log_confusion(loggers, [r["label"] for r in rows], [r["pred"] for r in rows], names)
    tracking.log_learned(loggers, learned)
    try:  # token and layer weights for a few test texts (also explanations.json)
        found = record_examples(model, datamodule.tokenizer, list(texts[:4]), datamodule.max_length, output_dir)
        if found:
            tracking.log_explanations(loggers, *found)
    except Exception as err:  # the run's results are computed: never lose them over a plot
        log.warning("could not record the pooler's token/layer weights: %s: %s", type(err).__name__, err)


def announce(rec: RunRecord, job: Job) -> None:
    m = rec.metrics
    line = f"test/acc={m.get('test/acc', math.nan):.4f} test/f1_macro={m.get('test/f1_macro', math.nan):.4f}"
    log.info("%s (%s)", line, job.name or "defaults")
    print(f"[poolbench] {job.name or 'defaults'}: {line}  -> {job.output_dir}")


@dataclass
class Job:
    """Who and where this job is: its config, Hydra's view of it, its folder, name, W&B group and rank."""

    cfg: DictConfig
    hydra: DictConfig
    output_dir: Path
    choices: dict
    name: str  # the swept overrides, e.g. pooling=cls,seed=1
    group: str | None  # the sweep folder: all jobs of a sweep share a W&B group
    rank_zero: bool
    threads: int | None = None  # torch threads, set by ``run`` (``distributed.set_threads``)

    @classmethod
    def current(cls, cfg: DictConfig) -> Job:
        hydra_cfg = HydraConfig.get()
        multirun = hydra_cfg.mode == RunMode.MULTIRUN
        # the config groups of this config (data, encoder, pooling, ...), with the choice made for each
        choices = {g: c for g, c in hydra_cfg.runtime.choices.items() if "/" not in g and g in cfg}
        return cls(
            cfg,
            hydra_cfg,
            Path(cfg.paths.output_dir),
            choices,
            record.scrub(run_name(hydra_cfg)),
            str(hydra_cfg.sweep.dir) if multirun else None,
            distributed.is_rank_zero(),
        )

    @property
    def multirun(self) -> bool:
        return self.hydra.mode == RunMode.MULTIRUN

    def open_record(self, previous: RunRecord | None, checkpoint: str | None) -> RunRecord:
        return RunRecord(
            choices=self.choices,
            overrides=self.name,
            # the command that reruns this job (same config, same seed: same numbers on CPU)
            rerun=record.scrub(" ".join(["python train.py", *map(shlex.quote, self.hydra.overrides.task)])),
            group=self.group,
            output_dir=str(self.output_dir),
            config=OmegaConf.to_container(self.cfg, resolve=True),
            versions=record.package_versions(),
            git=record.git_state(self.hydra.runtime.cwd),
            host={"name": socket.gethostname(), "pid": os.getpid(), "torch_threads": self.threads},
            resumed_from=checkpoint,
            wandb_id=previous.wandb_id if previous else None,
        )

    def open_loggers(self, rec: RunRecord) -> list:
        """The job's loggers, first of all: a job that fails while loading its data still has a W&B run, marked
        failed. The run's id is kept in the record, so that a resumed job logs into the same run."""
        loggers = tracking.build_loggers(
            self.cfg.logger, self.logged_config(), self.name or None, self.group, rec.wandb_id
        )
        if self.rank_zero:
            rec.wandb_id = tracking.run_id(loggers)
        return loggers

    def save(self, rec: RunRecord, last: bool = False) -> None:
        """Write the record to ``results.json`` (rank zero alone keeps it). The ``last`` write of a job meeting a full
        disk logs it, and the job's own outcome stands (the record keeps its previous state)."""
        if not self.rank_zero:
            return
        try:
            rec.write(self.output_dir / record.RESULTS)
        except DiskFullError as err:
            if not last:
                raise
            log.error("could not update %s: %s", self.output_dir / record.RESULTS, err)

    def note_built(self, rec: RunRecord, model, trainer: pl.Trainer) -> None:
        if self.rank_zero:
            rec.pooler_weights = getattr(model.pooling, "source", None)
            rec.world_size = trainer.world_size

    def logged_config(self) -> dict:
        """The resolved config, with each group's choice as ``<group>.name`` (W&B filters/groups on it)."""
        config = OmegaConf.to_container(self.cfg, resolve=True)
        for group, choice in self.choices.items():
            if isinstance(config.get(group), dict):
                config[group] = {"name": choice, **config[group]}
        return config

    def skip(self, previous: RunRecord) -> float | None:
        log.info("resume: %s finished before; skipped", self.output_dir)
        print(f"[poolbench] {self.name or 'defaults'}: finished before, skipped (resume=true)  -> {self.output_dir}")
        return previous.metrics.get(self.cfg.optimized_metric)

    def keep_going(self, err: Exception, rec: RunRecord) -> None:
        """A failed job. The user's error (config, data, encoder): one message, exit status 2, the traceback in
        train.log and results.json only; ours: its traceback. Alone the job stops there; in a sweep the next job
        runs (unless ``fail_fast``) and the sweep's summary reports every failure."""
        mistake = user_error(err)
        if mistake is not None:
            rec.error, rec.user_error = f"{type(mistake).__name__}: {mistake}", True
            to_log_file(f"job failed: {rec.error}\n{rec.traceback}")
            print(f"poolbench: {self.name + ': ' if self.multirun and self.name else ''}{mistake}", file=sys.stderr)
        else:
            log.error("job failed: %s: %s", type(err).__name__, err)
        if not self.multirun:
            if mistake is not None:
                raise SystemExit(2)
            raise err
        if self.cfg.fail_fast:  # Hydra's launcher would go on with the next job: stop the whole sweep here
            raise SystemExit(f"stopping the sweep (fail_fast=true): {self.name or 'defaults'} failed: {err}") from err
        return None


def to_log_file(message: str) -> None:
    """Write to the job's log file (train.log) only, not to the console."""
    record = logging.LogRecord(log.name, logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def run_name(hydra_cfg) -> str:
    """The job's overrides, e.g. ``pooling=cls,seed=1``; in a multirun only the keys the sweep varies."""
    task = list(hydra_cfg.overrides.task)
    if hydra_cfg.mode == RunMode.MULTIRUN:
        # what a search sweeper varies (hydra.sweeper.params, e.g. Optuna's), and what the command line sweeps
        swept = set((OmegaConf.select(hydra_cfg, "sweeper.params", default=None) or {}).keys())
        swept |= _swept_keys(Path(hydra_cfg.sweep.dir) / "multirun.yaml", task)
        if swept:
            task = [o for o in task if o.split("=", 1)[0].lstrip("+~") in swept]
    return ",".join(sorted(task))


def _swept_keys(multirun_yaml: Path, job_task: list[str]) -> set[str]:
    """Keys given several values on the multirun's command line, and keys a sweeper added to this job (the
    adaptive-seeds sweeper's ``seed``); the sweepers write multirun.yaml before the jobs run."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if not multirun_yaml.exists():
        return set()
    parser = OverridesParser.create()
    command = parser.parse_overrides(list(OmegaConf.load(multirun_yaml).hydra.overrides.task))
    added = {o.key_or_group for o in parser.parse_overrides(job_task)} - {o.key_or_group for o in command}
    return {o.key_or_group for o in command if o.is_sweep_override()} | added
