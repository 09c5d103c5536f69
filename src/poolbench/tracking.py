"""Everything Weights & Biases: the job's loggers, run naming and grouping, what a run logs, finishing it,
reading runs back (``poolbench table --wandb``) and logging a table. No other module imports ``wandb``.

One run per job: named by the job's swept overrides (``pooling=cls,seed=1``), grouped by the sweep folder,
offline when there is no API key (``wandb sync`` later), always finished (marked failed when the job failed).
"""

from __future__ import annotations

import logging
import netrc
import os
from pathlib import Path
from urllib.parse import urlparse

from poolbench import record
from poolbench.record import RunRecord

log = logging.getLogger(__name__)

RECORD_FILES = (record.RESULTS, record.PREDICTIONS)  # attached to each W&B run under poolbench/
WANDB_STATES = {"finished": "finished", "failed": "failed", "crashed": "failed", "killed": "failed"}


def wandb_mode() -> str:
    """``online`` when the user has a W&B key, ``offline`` otherwise; an explicit ``WANDB_MODE`` wins.

    ``wandb.init`` raises when there is neither a key nor a mode: poolbench never does.
    """
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        if netrc.netrc().authenticators(host):  # where `wandb login` stores the key
            return "online"
    except (OSError, netrc.NetrcParseError):
        pass
    return "offline"


def _is_wandb(logger_or_class) -> bool:
    from lightning.pytorch.loggers import WandbLogger

    if isinstance(logger_or_class, type):
        return issubclass(logger_or_class, WandbLogger)
    return isinstance(logger_or_class, WandbLogger)


def uses_wandb(configs) -> bool:
    """Whether ``cfg.logger`` has a W&B logger (by its class, not its name)."""
    from hydra.utils import get_class

    return any(_is_wandb(get_class(cfg._target_)) for cfg in (configs or {}).values())


def build_loggers(configs, config: dict, name: str | None, sweep_dir: str | None, run_id: str | None) -> list:
    """The job's loggers from ``cfg.logger``; ``config`` (the resolved config) is logged.

    A W&B logger gets the job's name (its swept overrides) and, for a resumed job, the id of the run it logged into
    before. In a sweep, every job's run goes into one folder, ``SWEEP/wandb/`` (so that ``wandb leet SWEEP/wandb``
    compares them and one ``wandb sync`` uploads them), grouped by the sweep folder.
    """
    from hydra.utils import get_class, instantiate

    loggers = []
    for cfg in (configs or {}).values():
        if _is_wandb(get_class(cfg._target_)):
            where = {"save_dir": sweep_dir} if sweep_dir else {}
            lg = instantiate(cfg, name=name, group=sweep_dir, id=run_id, **where)
            # what a comparison needs in the summary: the best validation macro-F1 (test/* keep their final value)
            lg.experiment.define_metric("val/f1_macro", summary="max")
            loggers.append(lg)
        else:
            loggers.append(instantiate(cfg))
    for lg in loggers:
        lg.log_hyperparams(record.scrub(config))
    return loggers


def run_id(loggers) -> str | None:
    """The W&B run's id: kept in the record, so that a resumed job logs into the same run."""
    return next((lg.experiment.id for lg in loggers if _is_wandb(lg)), None)


def log_confusion(loggers, labels: list[int], preds: list[int], class_names: list[str]) -> None:
    for lg in loggers:
        if _is_wandb(lg):
            import wandb

            matrix = wandb.plot.confusion_matrix(y_true=labels, preds=preds, class_names=class_names)
            lg.experiment.log({"test/confusion_matrix": matrix})


def log_learned(loggers, learned: dict | None) -> None:
    """What the learned parts did (``results.json`` ``learned``) into the run's summary, as ``learned/<part>/<key>``
    (``learned/pooling/token_weights/top_x_tokens``, ``learned/pooling/note``, ...): W&B tables can filter on it."""
    if not learned:
        return
    flat = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}/{k}", v)
        elif value is not None:
            flat[prefix] = value

    walk("learned", learned)
    for lg in loggers:
        if _is_wandb(lg):
            lg.experiment.summary.update(flat)


def log_explanations(loggers, explanations: list, pngs: list[Path], layers: list[float] | None) -> None:
    """Token weights (``explain/token_weights``), layer weights and their plots, into the run."""
    for lg in loggers:
        if not _is_wandb(lg):
            continue
        import wandb

        rows = [
            [i, j, tok, w]
            for i, e in enumerate(explanations)
            for j, (tok, w) in enumerate(zip(e.tokens, e.weights, strict=True))
        ]
        logged = {"explain/images": [wandb.Image(str(p)) for p in pngs]}
        if rows:
            logged["explain/token_weights"] = wandb.Table(columns=["example", "position", "token", "weight"], data=rows)
        if layers is not None:
            logged["explain/layer_weights"] = wandb.Table(columns=["layer", "weight"], data=list(enumerate(layers)))
        lg.experiment.log(logged)


def finish(ok: bool, output_dir: Path) -> None:
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
        try:
            wandb.finish(exit_code=0 if ok else 1)
        except Exception as err:  # e.g. its service killed by a SLURM requeue: the record is written
            log.warning(
                "could not close the W&B run (%s: %s); its files are in %s",
                type(err).__name__,
                err,
                Path(wandb.run.dir).parent if wandb.run else "wandb/",
            )


def read_runs(path: str, group: str | None = None, cache: Path | None = None, api=None):
    """The runs of a W&B project (``ENTITY/PROJECT``), or of one sweep's ``group``, with ``wandb.Api``.

    Yields ``(folder, RunRecord, source)``. A poolbench run's attached records are downloaded into
    ``cache/<run id>/poolbench`` and read like a local folder; a run without them (logged by other code) is
    read from its W&B config and summary (means and stds only: no predictions to compare).
    """
    if api is None:
        import wandb

        api = wandb.Api()
    if cache is None:
        cache = Path(os.environ.get("POOLBENCH_CACHE", "~/.cache/poolbench")).expanduser() / "wandb" / path
    for wrun in api.runs(path, filters={"group": group} if group else None):
        folder = Path(cache) / wrun.id / "poolbench"
        files = {f.name: f for f in wrun.files()}
        for name in RECORD_FILES:
            if f"poolbench/{name}" in files:
                files[f"poolbench/{name}"].download(root=str(folder.parent), replace=True)
        source = f"wandb:{path}/{wrun.id} ({wrun.name})"
        found = RunRecord.load(folder) if (folder / record.RESULTS).is_file() else _record_from_run(wrun)
        yield folder, found, source


def _record_from_run(wrun) -> RunRecord:
    """A record from a run's W&B config (``<group>.name`` gives the choice) and numeric test/val summary."""
    config, choices = {}, {}
    for key, value in dict(wrun.config).items():
        if isinstance(value, dict) and "name" in value:
            choices[key] = value["name"]
            value = {k: v for k, v in value.items() if k != "name"}
        config[key] = value
    numeric = {k: v for k, v in dict(wrun.summary).items() if isinstance(v, int | float) and not isinstance(v, bool)}
    metrics = {k: float(v) for k, v in numeric.items() if k.startswith(("test/", "val/"))}
    status = WANDB_STATES.get(wrun.state, wrun.state)
    return RunRecord(status=status, choices=choices, config=config, metrics=metrics, group=getattr(wrun, "group", None))


def log_table(
    header: list[str],
    body: list[list[str]],
    images: dict[str, Path],
    config: dict,
    group: str | None,
    project: str = "poolbench",
    mode: str | None = None,
    tables: dict | None = None,
    name: str = "ablation-table",
) -> str:
    """Log a table (``wandb.Table``), its plots and any further ``tables`` (name -> (columns, rows)) to a summary
    run in ``group``; return the run's id.

    With the group of the sweep's runs, the summary sits next to them in the W&B UI; when the group is a local
    sweep folder, the run is written into its ``wandb/`` folder, next to the jobs' runs. Offline without a key
    (then ``wandb sync`` it like any run).
    """
    import wandb

    where = {"dir": group} if group and Path(group).is_dir() else {}
    run = wandb.init(
        project=project, group=group, job_type="summary", name=name, mode=mode or wandb_mode(), config=config, **where
    )
    try:
        logged = {f"ablation/{key}": wandb.Image(str(path)) for key, path in images.items()}
        for key, (columns, rows) in (tables or {}).items():
            logged[f"ablation/{key}"] = wandb.Table(columns=columns, data=rows)
        run.log({"ablation/table": wandb.Table(columns=header, data=body), **logged})
        return run.id
    finally:
        run.finish()


def offline_runs(folder: Path) -> list[Path]:
    """The offline W&B runs of a sweep (``SWEEP/wandb/offline-run-*``) or of a single run's folder."""
    return sorted(Path(folder).glob("wandb/offline-run-*")) + sorted(Path(folder).glob("*/wandb/offline-run-*"))
