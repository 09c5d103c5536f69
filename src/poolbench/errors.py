"""Errors that are the user's to fix: a config value, a data file, an encoder that cannot be loaded.

A job that fails with one of these prints one clear message (what, where: file, line, column, config key;
what is allowed) and exits with status 2; its traceback goes to ``train.log`` and ``results.json`` only.
Any other exception is ours: it keeps its traceback. This module imports nothing, so every tier may use it.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input; the message alone tells the user what to change."""


class ConfigError(UserError, ValueError):
    """One or more invalid settings; the message lists every one of them."""


class DataError(UserError, ValueError):
    """Bad user data: the message names the file (or source), the line or row, and the column."""


class EncoderError(UserError, OSError):
    """An encoder or tokenizer that cannot be loaded: a missing folder, a folder without a model, a hub name
    that cannot be fetched."""


def user_error(err: BaseException | None) -> UserError | None:
    """The user's error behind ``err``, if any (Hydra's ``instantiate`` wraps what a constructor raised)."""
    while err is not None:
        if isinstance(err, UserError):
            return err
        err = err.__cause__ or err.__context__
    return None
