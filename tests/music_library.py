"""Short ambient tracks for tests that play the phase playlists through real libvlc.

The shipped tracks are generated at the daemon's first start (a few seconds); tests copy the
shipped playlists next to 3-second tracks instead, so a fresh clone does not wait for them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sessiond.room.ambient import ensure_library

PLAYLISTS = Path(__file__).resolve().parent.parent / "playlists"
TRACK_S = 3.0


def short_playlists(directory: Path) -> Path:
    """The shipped `.m3u` files in `directory`, their tracks `TRACK_S` long; returns it."""
    directory.mkdir(parents=True, exist_ok=True)
    for playlist in PLAYLISTS.glob("*.m3u"):
        shutil.copy(playlist, directory / playlist.name)
    ensure_library(directory / "audio", duration_s=TRACK_S)
    return directory
