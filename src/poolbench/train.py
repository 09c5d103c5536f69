"""One job: build everything from the config, fit, test the best checkpoint, record the run."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shlex
import socket
import sys
import time
import traceback
from pathlib import Path

import lightning.pytorch as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from poolbench import record
from poolbench.checks import validate
from poolbench.model import build_model
from poolbench.preemption import Preemption, under_submitit

log = logging.getLogger(__name__)
nan = math.nan

GROUPS = ("data", "encoder", "layers", "pooling", "model", "trainer", "logger")


def run(cfg: DictConfig) -> float | None:
    """Run one job; return ``cfg.optimized_metric`` for sweepers. Always writes ``results.json``.

    Under DDP every rank runs this; only rank zero writes the records (results.json, predictions, W&B).
    """
    hydra_cfg = HydraConfig.get()
    output_dir = Path(cfg.paths.output_dir)
    zero = is_rank_zero()
    threads = _set_threads(hydra_cfg)
    choices = {g: hydra_cfg.runtime.choices.get(g) for g in GROUPS}
    overrides = record.scrub(_run_name(hydra_cfg))  # override values are resolved: may hold a secret
    group = _sweep_group(hydra_cfg)
    # a job requeued by submitit (preempted or timed out) finds its own unfinished record: it resumes
    resume = cfg.get("resume") or under_submitit()
    previous = _read_results(output_dir) if resume and zero else None
    if previous and previous.get("status") == "finished":
        log.info("resume: %s finished before; skipped", output_dir)
        print(f"[poolbench] {overrides or 'defaults'}: finished before, skipped (resume=true)  -> {output_dir}")
        return (previous.get("metrics") or {}).get(cfg.optimized_metric)
    last_ckpt = output_dir / "checkpoints" / "last.ckpt"
    resume_from = str(last_ckpt) if previous and last_ckpt.is_file() else None
    if not zero:  # DDP: the other ranks resume from what rank zero chose (they start after it decided)
        resume_from = os.environ.get(RESUME_ENV) or None
    write = record.atomic_write_json if zero else (lambda *args: None)
    started = time.time()
    results: dict = {
        "status": "running",
        "choices": choices,
        "overrides": overrides,
        # the command that reruns this job (same config, same seed: same numbers on CPU)
        "rerun": record.scrub(" ".join(["python train.py", *map(shlex.quote, hydra_cfg.overrides.task)])),
        "group": group,
        "output_dir": str(output_dir),
        "config": OmegaConf.to_container(cfg, resolve=True),
        "versions": record.package_versions(),
        "git": record.git_state(hydra_cfg.runtime.cwd),
        "host": {"name": socket.gethostname(), "pid": os.getpid(), "torch_threads": threads},
        "resumed_from": resume_from,
        "wandb_id": (previous or {}).get("wandb_id"),
    }
    write(output_dir / "results.json", results)
    loggers = []
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        validate(cfg)
        pl.seed_everything(cfg.seed, workers=True)
        datamodule, model, trainer, loggers = _build(cfg, choices, overrides, group, results["wandb_id"])
        if zero:
            results["pooler_weights"] = getattr(model.pooling, "source", None)
            results["wandb_id"] = _wandb_id(loggers)  # kept, so that a resumed job logs into the same W&B run
            results["world_size"] = trainer.world_size
        write(output_dir / "results.json", results)
        os.environ[RESUME_ENV] = resume_from or ""  # read by DDP's other ranks, started by trainer.fit
        with _distributed_job(hydra_cfg, output_dir, multirun and zero, trainer.world_size > 1):
            t0 = time.time()
            trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
            fit_seconds = time.time() - t0
            best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            val_metrics = _floats(trainer.callback_metrics)
            t0 = time.time()
            # test on the checkpoint with the best val/f1_macro (the last weights when none was saved)
            trainer.test(model, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
            test_seconds = time.time() - t0
        metrics = {**{k: v for k, v in val_metrics.items() if not k.startswith("test/")},
                   **_floats(trainer.callback_metrics)}  # fmt: skip
        if best:
            metrics["val/f1_macro_best"] = float(trainer.checkpoint_callback.best_model_score)
        if not zero:
            return metrics.get(cfg.optimized_metric)
        _write_predictions(output_dir / "test_predictions.jsonl", model, datamodule)
        last_ckpt.unlink(missing_ok=True)  # only needed to resume an unfinished job
        confusion = model.test_confusion_matrix.tolist()
        results.update(
            status="finished",
            metrics=metrics,
            confusion_matrix={"labels": datamodule.label_names, "rows_true_cols_pred": confusion},
            best_checkpoint=best or None,
            timings={"fit_seconds": fit_seconds, "test_seconds": test_seconds},
            num_examples={s: len(datamodule.splits[s]) for s in datamodule.splits},
            data_checksums=datamodule.data_checksums,
            epochs=trainer.current_epoch,
            global_step=trainer.global_step,
        )
        _log_confusion(loggers, model, datamodule)
        _record_explanations(model, datamodule, output_dir, loggers)
        line = f"test/acc={metrics.get('test/acc', nan):.4f} test/f1_macro={metrics.get('test/f1_macro', nan):.4f}"
        log.info("%s (%s)", line, overrides or "defaults")
        print(f"[poolbench] {overrides or 'defaults'}: {line}  -> {output_dir}")
        return metrics.get(cfg.optimized_metric)
    except Exception as err:
        results.update(status="failed", error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc())
        log.error("job failed: %s: %s", type(err).__name__, err)
        if not multirun:
            raise
        if cfg.get("fail_fast", False):
            # Hydra's launcher would go on with the next job: stop the whole sweep here
            raise SystemExit(f"stopping the sweep (fail_fast=true): {overrides or 'defaults'} failed: {err}") from err
        return None  # keep going: the failure is in results.json and W&B; the sweep's summary reports it
    except BaseException as err:  # interrupted (Ctrl-C, SystemExit): recorded, never swallowed
        results.update(status="interrupted", error=f"{type(err).__name__}: {err}")
        raise
    finally:
        results["timings"] = {**results.get("timings", {}), "total_seconds": time.time() - started}
        write(output_dir / "results.json", results)
        if zero:
            _finish_wandb(results["status"] == "finished", output_dir)


RESUME_ENV = "POOLBENCH_RESUME_FROM"


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


def _set_threads(hydra_cfg) -> int:
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


DDP_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")  # set by Lightning's launcher


@contextlib.contextmanager
def _distributed_job(hydra_cfg, output_dir: Path, in_multirun: bool, distributed: bool):
    """Fit and test of one DDP job; the next job of a sweep starts from a clean slate.

    In a multirun, Lightning's DDP launcher would start the other ranks as ``sys.argv`` +
    ``hydra.run.dir=<run.dir>``: the whole sweep again, in another folder. Here they get this job's overrides,
    in RUN mode, in its folder. Afterwards the process group and the launcher's environment variables are
    removed, so that the next job launches its own ranks instead of waiting for the last job's.
    """
    if not distributed:
        yield
        return
    from omegaconf import read_write

    argv, run_dir, saved_env = sys.argv, hydra_cfg.run.dir, {k: os.environ.get(k) for k in DDP_ENV}
    if in_multirun:
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


def _read_results(output_dir: Path) -> dict | None:
    import json

    path = output_dir / "results.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _wandb_id(loggers) -> str | None:
    from lightning.pytorch.loggers import WandbLogger

    return next((lg.experiment.id for lg in loggers if isinstance(lg, WandbLogger)), None)


def _build(cfg: DictConfig, choices: dict, name: str, group: str | None, wandb_id: str | None = None):
    """Data, model, trainer and loggers of one job, from its config."""
    # loggers first: a job that fails while loading its data still has a W&B run, marked failed
    loggers = [_build_logger(c, name or None, group, wandb_id) for c in (cfg.get("logger") or {}).values()]
    for lg in loggers:
        lg.log_hyperparams(record.scrub(_logged_config(cfg, choices)))
    tokenizer = instantiate(cfg.encoder.tokenizer)
    datamodule = instantiate(cfg.data, tokenizer=tokenizer, seed=cfg.seed)
    datamodule.prepare_data()
    datamodule.setup("fit")
    if not cfg.encoder.pretrained:
        log.warning("encoder=%s is randomly initialised, NOT pretrained: for smoke tests only", choices["encoder"])
    model = build_model(cfg, datamodule.num_labels, datamodule.label_names, encoder_name=str(choices["encoder"]))
    if model.layers.all_layers and cfg.encoder.freeze and cfg.encoder.get("cache_features", True):
        log.info("layers=%s reads several layers: token states are not cached; the encoder runs in every step",
                 choices["layers"])  # fmt: skip
    elif cfg.encoder.freeze and cfg.encoder.get("cache_features", True):
        from poolbench.features import cached_token_states

        states = cached_token_states(model.encoder, datamodule, cfg.paths.cache_dir, str(cfg.trainer.precision))
        datamodule.use_token_states(states)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    if under_submitit():  # preempted or timed out: save, let submitit requeue, resume
        callbacks.append(Preemption(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"))
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    return datamodule, model, trainer, loggers


def _run_name(hydra_cfg) -> str:
    """The job's overrides, e.g. ``pooling=cls,seed=1``; in a multirun only the keys the sweep varies."""
    task = list(hydra_cfg.overrides.task)
    if hydra_cfg.mode == RunMode.MULTIRUN:
        # what a search sweeper varies (hydra.sweeper.params, e.g. Optuna's), and what the command line sweeps
        swept = set((OmegaConf.select(hydra_cfg, "sweeper.params", default=None) or {}).keys())
        swept |= _swept_keys(Path(hydra_cfg.sweep.dir) / "multirun.yaml")
        if swept:
            task = [o for o in task if o.split("=", 1)[0].lstrip("+~") in swept]
    return ",".join(sorted(task))


def _swept_keys(multirun_yaml: Path) -> set[str]:
    """Keys given several values on the multirun's command line (Hydra's basic sweeper writes multirun.yaml
    before the jobs run)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if not multirun_yaml.exists():
        return set()
    task = OmegaConf.load(multirun_yaml).hydra.overrides.task
    parsed = OverridesParser.create().parse_overrides(list(task))
    return {o.key_or_group for o in parsed if o.is_sweep_override()}


def _sweep_group(hydra_cfg) -> str | None:
    """All jobs of one multirun share a W&B group: the sweep folder, e.g. ``multirun/2026-11-25/12-00-00``."""
    if hydra_cfg.mode == RunMode.MULTIRUN:
        return str(hydra_cfg.sweep.dir)
    return None


def _build_logger(cfg: DictConfig, name: str | None, group: str | None, wandb_id: str | None):
    target = cfg.get("_target_", "")
    if target.endswith("WandbLogger"):
        return instantiate(cfg, name=name, group=group, id=wandb_id)
    return instantiate(cfg)


def _logged_config(cfg: DictConfig, choices: dict) -> dict:
    """The resolved config, with each group's choice as ``<group>.name`` (W&B filters/groups on it)."""
    config = OmegaConf.to_container(cfg, resolve=True)
    for group, choice in choices.items():
        if isinstance(config.get(group), dict):
            config[group] = {"name": choice, **config[group]}
    return config


def _floats(metrics) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()}


def _write_predictions(path: Path, model, datamodule) -> None:
    import json

    texts = datamodule.raw["test"].texts
    names = datamodule.label_names
    lines = []
    for row in sorted(model.test_predictions, key=lambda r: r["idx"]):
        lines.append(
            json.dumps(
                {
                    **row,
                    "label_name": names[row["label"]],
                    "pred_name": names[row["pred"]],
                    "text": texts[row["idx"]],
                }
            )  # fmt: skip
        )
    record.atomic_write_text(path, record.scrub("\n".join(lines) + "\n"))


def _log_confusion(loggers, model, datamodule) -> None:
    from lightning.pytorch.loggers import WandbLogger

    for lg in loggers:
        if isinstance(lg, WandbLogger):
            import wandb

            rows = model.test_predictions
            lg.experiment.log(
                {
                    "test/confusion_matrix": wandb.plot.confusion_matrix(
                        y_true=[r["label"] for r in rows],
                        preds=[r["pred"] for r in rows],
                        class_names=datamodule.label_names,
                    )
                }
            )


def _record_explanations(model, datamodule, output_dir: Path, loggers) -> None:
    """Attention-type poolers and layers=scalar_mix: what they learned, for a few test texts (never fatal)."""
    from poolbench.explain import record_examples

    texts = list(datamodule.raw["test"].texts[:4])
    try:
        record_examples(model, datamodule.tokenizer, texts, datamodule.max_length, output_dir, loggers)
    except Exception as err:  # noqa: BLE001 - the run's results are already computed: never lose them over a plot
        log.warning("could not record the pooler's token/layer weights: %s: %s", type(err).__name__, err)


def _finish_wandb(ok: bool, output_dir: Path) -> None:
    """Close this job's W&B run (marked failed if the job failed), so the next job of a sweep gets its own.

    The run carries the job's records as files (``poolbench/results.json`` and the test predictions without
    texts), so ``poolbench table --wandb ENTITY/PROJECT`` rebuilds the same table, comparisons included.
    """
    try:
        import wandb
    except ImportError:
        return
    if wandb.run is not None:
        try:
            record.copy_records(output_dir, Path(wandb.run.dir) / "poolbench")
        except OSError as err:  # the local record is what matters; never lose it over the copy
            log.warning("could not attach the run's records to W&B: %s", err)
        wandb.finish(exit_code=0 if ok else 1)
