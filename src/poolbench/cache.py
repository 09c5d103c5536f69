"""Cache entries shared by every job (tokenised splits, frozen token states): made once, checked when opened.

An entry is a folder. It is built under a temporary name unique across hosts and processes (two nodes writing
one shared file system never pick the same), sealed with a manifest of its files (size and sha256), and then
renamed into place: a reader never sees half an entry. When two jobs build the same entry at once, the first
rename wins and the other's copy is dropped; both read the winner's, which holds the same thing.

Opening an entry checks it against its manifest (every size; the sha256 of files up to ``FULL_HASH_BYTES``,
of the first and last MiB of larger ones). A damaged entry (truncated, changed, unreadable) is put aside and
rebuilt, with one warning that names it. Where rebuilding fails, ``CacheError`` says which folder to remove.
Entries made before manifests existed are checked by reading them, and sealed then.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from poolbench.errors import UserError

log = logging.getLogger(__name__)

MANIFEST = "poolbench-manifest.json"
FULL_HASH_BYTES = 64 * 2**20
SAMPLE_BYTES = 2**20
T = TypeVar("T")


class CacheError(UserError, OSError):
    """A cache entry that is damaged and cannot be rebuilt: the message names the folder to remove."""


def unique_name(final: Path, what: str = "tmp") -> Path:
    """A sibling of ``final`` that no other process on any host picks: ``.<name>.<host>.<pid>.<random>.<what>``."""
    host = socket.gethostname().split(".")[0] or "host"
    return final.with_name(f".{final.name}.{host}.{os.getpid()}.{uuid.uuid4().hex[:12]}.{what}")


def digest(path: Path, size: int) -> str:
    """sha256 of a file, or of its size and first and last MiB when it is larger than ``FULL_HASH_BYTES``."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        if size <= FULL_HASH_BYTES:
            for block in iter(lambda: f.read(2**20), b""):
                h.update(block)
        else:
            h.update(str(size).encode())
            h.update(f.read(SAMPLE_BYTES))
            f.seek(size - SAMPLE_BYTES)
            h.update(f.read(SAMPLE_BYTES))
    return h.hexdigest()


def seal(folder: Path) -> None:
    """Write the manifest of every file in ``folder``."""
    files = {}
    ours = (MANIFEST, f".{MANIFEST}.")
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(ours)):
        size = path.stat().st_size
        files[path.relative_to(folder).as_posix()] = {"size": size, "sha256": digest(path, size)}
    tmp = unique_name(folder / MANIFEST)
    tmp.write_text(json.dumps({"files": files}, indent=1) + "\n")
    os.replace(tmp, folder / MANIFEST)  # a reader sees no manifest or a whole one


def damage(folder: Path) -> str | None:
    """What is wrong with the entry in ``folder`` by its manifest (``None``: intact, or made without one)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        return f"its manifest is unreadable ({type(err).__name__})"
    for name, expected in manifest["files"].items():
        path = folder / name
        try:
            size = path.stat().st_size
        except OSError:
            return f"{name} is missing"
        if size != expected["size"]:
            return f"{name} has {size} bytes, {expected['size']} were written"
        if digest(path, size) != expected["sha256"]:
            return f"{name} has changed since it was written (sha256)"
    return None


def put_aside(folder: Path) -> None:
    """Remove an entry without disturbing a job that is reading it (renamed first, then deleted)."""
    aside = unique_name(folder, "damaged")
    try:
        os.replace(folder, aside)
    except FileNotFoundError:  # another job put it aside first
        return
    shutil.rmtree(aside, ignore_errors=True)


def build(folder: Path, make: Callable[[Path], None]) -> None:
    """Make the entry under a unique temporary name, seal it and rename it into place (unless another job
    did first)."""
    tmp = unique_name(folder)
    tmp.mkdir(parents=True)
    try:
        make(tmp)
        seal(tmp)
        try:
            os.replace(tmp, folder)
        except OSError:  # the folder exists and is not empty: another job's copy is already in place
            if not (folder / MANIFEST).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def open_entry(folder: Path, make: Callable[[Path], None], load: Callable[[Path], T], what: str) -> T:
    """``load(folder)`` of an intact entry: built by ``make(tmp)`` when missing; rebuilt, with one warning,
    when damaged or unreadable."""
    folder = Path(folder)
    problem = damage(folder) if folder.is_dir() else None
    if problem is None:
        if not folder.is_dir():
            build(folder, make)
        try:
            loaded = load(folder)
        except Exception as err:  # any failure to read it is damage
            problem = f"it cannot be read: {type(err).__name__}: {str(err)[:200]}"
        else:
            if not (folder / MANIFEST).is_file():  # made before manifests: it reads, so seal it now
                _try_seal(folder)
            return loaded
    log.warning("the cached %s in %s is damaged (%s); rebuilding it", what, folder, problem)
    try:
        put_aside(folder)
        build(folder, make)
        return load(folder)
    except Exception as err:
        raise CacheError(
            f"the cached {what} in {folder} is damaged ({problem}) and could not be rebuilt "
            f"({type(err).__name__}: {err}); remove it (rm -rf '{folder}') and run again"
        ) from err


def _try_seal(folder: Path) -> None:
    try:
        seal(folder)
    except OSError as err:  # a read-only shared cache: it stays unsealed, and is checked by reading it
        log.debug("could not seal %s: %s", folder, err)
