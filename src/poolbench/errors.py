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
