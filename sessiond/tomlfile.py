"""TOML files as data, each problem a `ConfigError` naming the file (configuration, scenarios)."""

from __future__ import annotations

import tomllib
from typing import TYPE_CHECKING, Any

from sessiond.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path


def parse_toml(text: str, *, source: str) -> dict[str, Any]:
    """TOML text as data; `ConfigError` naming `source` when it is not TOML."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{source}: not valid TOML: {exc}"]) from None


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file as data; `ConfigError` naming the file when it cannot be read or parsed."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text"]) from None
    return parse_toml(text, source=str(path))
