"""Errors every command may report, in a module that imports nothing heavy (start-up)."""

from __future__ import annotations


class ConfigError(Exception):
    """A configuration file that cannot be used; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
