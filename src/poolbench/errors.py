"""Errors that are the user's to fix: a config value, a data file, an encoder that cannot be loaded.

A job that fails with one of these prints one clear message (what, where: file, line, column, config key;
what is allowed) and exits with status 2; its traceback goes to ``train.log`` and ``results.json`` only.
Any other exception is ours: it keeps its traceback. This module imports nothing, so every tier may use it.
"""

from __future__ import annotations

import errno
import os
import shutil


class UserError(Exception):
    """Bad input; the message alone tells the user what to change."""


class ConfigError(UserError, ValueError):
    """One or more invalid settings; the message lists every one of them."""


class DataError(UserError, ValueError):
    """Bad user data: the message names the file (or source), the line or row, and the column."""


class EncoderError(UserError, OSError):
    """An encoder or tokenizer that cannot be loaded: a missing folder, a folder without a model, a hub name
    that cannot be fetched."""


class DiskFullError(UserError, OSError):
    """No space left where a job writes: the message names the path, what was being written and the free space."""

    def __init__(self, path: str | os.PathLike, what: str) -> None:
        self.path = str(path)
        super().__init__(
            errno.ENOSPC,
            f"no space left on the device of {self.path} while writing {what} ({free_space(self.path)} free there); "
            "free some space, then run the same command with resume=true",
        )

    def __str__(self) -> str:
        return self.strerror


def free_space(path: str | os.PathLike) -> str:
    """The free space of the file system that holds ``path`` (or its nearest existing parent), e.g. ``1.5 MB``."""
    folder = os.path.abspath(path)
    while folder and not os.path.exists(folder):
        folder = os.path.dirname(folder)
    try:
        free = shutil.disk_usage(folder or "/").free
    except OSError:
        return "unknown"
    return f"{free / 2**20:.1f} MB" if free < 2**30 else f"{free / 2**30:.1f} GB"


def no_space(err: BaseException) -> bool:
    """Whether ``err`` (or what caused it) is a full disk: ENOSPC, or torch's and Arrow's wording of it."""
    while err is not None:
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(err)
        if "No space left on device" in text or "file write failed" in text or "Disk quota exceeded" in text:
            return True
        err = err.__cause__ or err.__context__
    return False


def user_error(err: BaseException | None) -> UserError | None:
    """The user's error behind ``err``, if any (Hydra's ``instantiate`` wraps what a constructor raised)."""
    while err is not None:
        if isinstance(err, UserError):
            return err
        err = err.__cause__ or err.__context__
    return None


class Settings:
    """A component's settings, read for its ``check``: each problem is collected as ``<group>.<key>: message``.

    Every configurable component (data modules, poolers, layer selectors, the classifier) has a classmethod
    ``check(settings, facts=None) -> list[str]`` built on this, called by its constructor (``raise_problems``)
    and, for every job of a sweep before anything runs, by ``poolbench.run.checks``; ``facts`` are what is known
    of the encoder (``hidden``, ``layers``, ``positions``, ``vocab``).
    """

    def __init__(self, settings, group: str) -> None:
        self.settings, self.group, self.problems = dict(settings or {}), group, []

    def get(self, key: str):
        value = self.settings.get(key)
        return None if value == "???" else value

    def require(self, ok: bool, key: str, message: str) -> bool:
        if not ok:
            self.problems.append(f"{self.group}.{key}: {message}")
        return ok

    def integer(self, key: str, low: int = 1, optional: bool = True) -> int | None:
        """An integer >= ``low`` (``None`` allowed when optional); the value when it is one."""
        v = self.get(key)
        ok = (v is None and optional) or (isinstance(v, int) and not isinstance(v, bool) and v >= low)
        self.require(ok, key, f"must be an integer >= {low}, got {v!r}")
        return v if ok else None

    def number(self, key: str, ok, allowed: str, optional: bool = False) -> float | None:
        """A number for which ``ok(value)`` holds (``allowed`` says which, in the message)."""
        v = self.get(key)
        is_number = isinstance(v, int | float) and not isinstance(v, bool)
        good = (v is None and optional) or (is_number and ok(v))
        self.require(good, key, f"must be {'null or ' if optional else ''}{allowed}, got {v!r}")
        return v if good and v is not None else None


def raise_problems(problems: list[str]) -> None:
    """A component's constructor: its own settings' problems as one ``ConfigError`` (one line, exit status 2)."""
    if problems:
        raise ConfigError("; ".join(problems))
