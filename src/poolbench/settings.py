"""Components check their own settings: the reader their ``check(settings, facts)`` classmethods are built on.

Imports only ``poolbench.errors``, so that every tier (data, model, run) may use it.
"""

from __future__ import annotations

from poolbench.errors import ConfigError


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
