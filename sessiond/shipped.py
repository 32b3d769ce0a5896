"""What sessiond ships beside its code: the phase playlists and the documented configuration.

In a wheel they are package data (`sessiond/_data/`, see pyproject's force-include); in a
source checkout they are the repository's own `playlists/` and `config/`. Either way the
daemon finds them without a path in its configuration, from any working directory.
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_CHECKOUT = _PACKAGE.parent


def _first(*candidates: Path) -> Path:
    return next((path for path in candidates if path.exists()), candidates[0])


def playlists_dir() -> Path:
    """The shipped phase playlists (read-only where the package is installed)."""
    return _first(_PACKAGE / "_data" / "playlists", _CHECKOUT / "playlists")


def config_example() -> Path:
    """The shipped configuration that documents every key, its default, unit and source."""
    return _first(_PACKAGE / "_data" / "sessiond.toml", _CHECKOUT / "config" / "sessiond.toml")


def cache_dir() -> Path:
    """Where sessiond may write what it can make again (the ambient tracks).

    systemd's `CacheDirectory=` when run as the service, else the XDG cache directory.
    """
    systemd = os.environ.get("CACHE_DIRECTORY")
    if systemd:
        return Path(systemd.split(":")[0])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "sessiond"
