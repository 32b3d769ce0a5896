"""Errors every command may report, in a module that imports nothing heavy (start-up)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence


class ConfigError(Exception):
    """A configuration file that cannot be used; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class KeyProblems(ValueError):
    """What a settings check found wrong with keys inside it, each reported at its key."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{key}: {problem}" for key, problem in problems))
        #: (dotted key below the settings, what is wrong with it)
        self.problems = tuple(problems)
