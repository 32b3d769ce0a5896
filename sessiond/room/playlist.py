"""M3U / M3U8 playlists: entries with their titles, relative paths resolved, files checked.

What players write in practice: an optional `#EXTM3U` header, `#EXTINF:<seconds>[ attrs],<title>`
before an entry, other `#` lines as comments or directives we do not use, blank lines, CRLF,
a UTF-8 byte-order mark. `.m3u8` is UTF-8; a plain `.m3u` is tried as UTF-8 and read as
Latin-1 when it is not (what older Windows players write). Relative paths are resolved against
the playlist's own directory; absolute paths and URLs are kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

#: `scheme://...`; two letters at least, so a Windows drive (`C:\`) is not taken for one.
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")
_EXTINF = "#EXTINF:"
#: A playlist is a short text file; anything far bigger is not one.
MAX_PLAYLIST_BYTES = 4 * 1024 * 1024


class PlaylistError(Exception):
    """A playlist that cannot be used; the message names the file (and line)."""

    def __init__(self, msg: str, *, path: Path | str, line: int | None = None) -> None:
        super().__init__(msg)
        self.path = str(path)
        self.line = line


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One track: a local file (`path`) or a URL (`url`), with what `#EXTINF` said of it."""

    path: Path | None = None
    url: str | None = None
    title: str | None = None
    duration_s: float | None = None
    #: Line number in the playlist (from 1), for messages.
    line: int = 0

    @property
    def name(self) -> str:
        """The file name (or the last part of the URL): what status shows as the track."""
        if self.path is not None:
            return self.path.name
        assert self.url is not None
        tail = PurePosixPath(unquote(urlsplit(self.url).path)).name
        return tail or self.url


@dataclass(frozen=True, slots=True, kw_only=True)
class Playlist:
    """A parsed playlist: its file, its name (the file's stem) and its entries, never empty."""

    path: Path
    entries: tuple[Entry, ...]

    @property
    def name(self) -> str:
        return self.path.stem


def _extinf(text: str) -> tuple[float | None, str | None]:
    """`-1 tvg-id="x",Title, with comma` → (None, "Title, with comma")."""
    head, comma, title = text.partition(",")
    duration: float | None = None
    fields = head.split()
    if fields:
        try:
            duration = float(fields[0])
        except ValueError:
            duration = None
    if duration is not None and duration < 0:
        duration = None  # -1: unknown length (streams)
    return duration, (title.strip() or None) if comma else None


def _resolve(location: str, base_dir: Path) -> Path:
    path = Path(location)
    if not path.is_absolute():
        path = base_dir / path
        if "\\" in location and not path.exists():
            # Written on Windows: backslash separators.
            path = base_dir / PurePosixPath(*location.split("\\"))
    return path


def parse_m3u(
    text: str, *, base_dir: Path, source: Path | str = "<playlist>", check_files: bool = True
) -> tuple[Entry, ...]:
    """The entries of playlist `text`; relative paths resolved against `base_dir`.

    With `check_files`, a local file that does not exist raises `PlaylistError` naming `source`,
    the line and the file. URLs are never checked (`file://` ones included).
    """
    entries: list[Entry] = []
    title: str | None = None
    duration: float | None = None
    for number, raw in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if line.upper().startswith(_EXTINF):
                duration, title = _extinf(line[len(_EXTINF) :])
            continue
        if _URL.match(line):
            entry = Entry(url=line, title=title, duration_s=duration, line=number)
        else:
            path = _resolve(line, base_dir)
            if check_files and not path.is_file():
                msg = f"{source}:{number}: no such file: {line}"
                raise PlaylistError(msg, path=source, line=number)
            entry = Entry(path=path, title=title, duration_s=duration, line=number)
        entries.append(entry)
        title, duration = None, None
    return tuple(entries)


def _decode(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if path.suffix.lower() == ".m3u8":
            # The line number of the bad byte: what an editor shows.
            line = data[: exc.start].count(b"\n") + 1
            msg = f"{path}:{line}: not UTF-8 (an .m3u8 playlist must be)"
            raise PlaylistError(msg, path=path, line=line) from exc
        return data.decode("latin-1")


def load_playlist(path: Path, *, check_files: bool = True) -> Playlist:
    """Read and parse the playlist file `path`; `PlaylistError` if missing, unreadable or empty."""
    try:
        if path.stat().st_size > MAX_PLAYLIST_BYTES:
            msg = f"{path}: too big for a playlist (over {MAX_PLAYLIST_BYTES} bytes)"
            raise PlaylistError(msg, path=path)
        data = path.read_bytes()
    except FileNotFoundError as exc:
        msg = f"{path}: no such playlist"
        raise PlaylistError(msg, path=path) from exc
    except OSError as exc:
        msg = f"{path}: cannot read playlist: {exc.strerror or exc}"
        raise PlaylistError(msg, path=path) from exc
    text = _decode(data, path)
    entries = parse_m3u(text, base_dir=path.parent, source=path, check_files=check_files)
    if not entries:
        msg = f"{path}: playlist has no entries"
        raise PlaylistError(msg, path=path)
    return Playlist(path=path, entries=entries)


def find_playlist(directory: Path, name: str) -> Path:
    """The playlist file for `name` in `directory`: `<name>.m3u8`, else `<name>.m3u`.

    A `name` that is itself a path to a playlist file (has a suffix) is used as it is,
    relative to `directory`.
    """
    if Path(name).suffix.lower() in (".m3u", ".m3u8"):
        return directory / name
    utf8 = directory / f"{name}.m3u8"
    return utf8 if utf8.exists() else directory / f"{name}.m3u"
