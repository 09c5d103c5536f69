"""Finished (and unfinished) runs, found in folders or read from W&B, as the rows of a table see them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from poolbench import record, tracking
from poolbench.record import RunRecord

# group choices added after runs were recorded, and what those runs did: a record from before `layers`
# existed pooled the last layer, so it sits in the same row as `layers=last`
ADDED_CHOICES = {"layers": "last"}


@dataclass
class Run:
    folder: Path
    record: RunRecord
    flat: dict = field(default_factory=dict)  # the config flattened (``model.lr``) plus the group choices
    source: str | None = None  # where it came from when not a local folder, e.g. wandb:ENTITY/PROJECT/ID
    _predictions: tuple | None = field(default=None, repr=False, compare=False)  # read once

    def __str__(self) -> str:
        return self.source or str(self.folder)

    @property
    def finished(self) -> bool:
        return self.record.finished

    @property
    def seed(self):
        return self.record.seed

    @property
    def metrics(self) -> dict:
        return self.record.metrics

    def has_predictions(self) -> bool:
        return (self.folder / record.PREDICTIONS).is_file()

    def predictions(self) -> tuple[np.ndarray, np.ndarray]:
        """(labels, predictions) of the test split, in example order (read once)."""
        if self._predictions is None:
            rows = record.read_predictions(self.folder)
            self._predictions = np.array([r["label"] for r in rows]), np.array([r["pred"] for r in rows])
        return self._predictions


def flatten(tree: dict, prefix: str = "") -> dict:
    """``{"model": {"lr": 1}}`` -> ``{"model.lr": 1}``; a list of plain values becomes one string
    (``data.domains: [movies, nyt]`` -> ``"movies,nyt"``), other lists are left out."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        elif isinstance(value, list):
            if all(isinstance(v, str | int | float | bool) for v in value):
                out[name] = ",".join(map(str, value))
        else:
            out[name] = value
    return out


def make_run(folder: Path, rec: RunRecord, source: str | None = None) -> Run:
    flat = flatten(rec.config)
    own = rec.output_dir  # settings that point into the run's own folder differ by nature
    flat = {k: v for k, v in flat.items() if not (own and isinstance(v, str) and own in v)}
    choices = {k: v for k, v in rec.choices.items() if v is not None}
    if choices:  # a poolbench record
        choices = ADDED_CHOICES | choices
    flat.update(choices)  # `pooling`, `encoder`, `data`: the names users sweep
    return Run(folder, rec, flat, source)


def find_runs(paths: list[str | Path]) -> list[Run]:
    """Every job under ``paths`` (folders searched recursively), finished or not."""
    runs = [make_run(file.parent, RunRecord.load(file)) for file in record.find(paths)]
    if not runs:
        raise FileNotFoundError(f"no results.json under {', '.join(map(str, paths))}")
    return runs


def find_wandb_runs(path: str, group: str | None = None, cache: Path | None = None, api=None) -> list[Run]:
    """The runs of a W&B project (``ENTITY/PROJECT``), or of one sweep's ``group`` (see ``tracking.read_runs``)."""
    if path.count("/") != 1:
        raise ValueError(f"--wandb {path}: expected ENTITY/PROJECT")
    try:
        runs = [make_run(folder, rec, source) for folder, rec, source in tracking.read_runs(path, group, cache, api)]
    except (FileNotFoundError, ValueError):
        raise
    except Exception as err:  # no key, no network, no such project: say which
        raise ValueError(f"could not read runs from W&B {path}: {type(err).__name__}: {err}") from err
    if not runs:
        raise FileNotFoundError(f"no W&B runs in {path}" + (f" with group {group!r}" if group else ""))
    return runs
