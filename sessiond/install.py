"""`sessiond init` and `sessiond backup`: what a clinic's IT person runs when installing a room.

`init` writes a commented configuration with the room, a first nurse user (the password is
hashed, never written) and the serial ports it finds by their stable names, each with a guess
at its device's protocol. The guess listens first: the streaming oximeters speak on their
own, so their lines are only read. A port that says nothing is then asked, with a command
that starts a stream or reads a value and changes nothing (Contec V7 "start live data",
SunTech "read cuff pressure").

`backup` copies the record while the daemon writes it, with SQLite's online backup (a
consistent snapshot, WAL included), and checks the copy.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import serial

from sessiond.devices import make_decoder
from sessiond.devices.contec import ContecV7Decoder
from sessiond.devices.suntech import SuntechAdvantageDecoder, cuff_pressure_command

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

logger = logging.getLogger(__name__)

#: Where udev names serial devices by their identity (survives replugging and reboots).
SERIAL_BY_ID = Path("/dev/serial/by-id")
#: How long a port is listened to at one line speed: a 1 Hz device says something in 2 s.
LISTEN_S = 2.2
#: Streaming protocols that speak unasked, by line speed (bytes read once, tried by each).
_LISTEN: dict[int, tuple[str, ...]] = {
    9600: ("masimo-ascii1", "nonin-df7", "nonin-df2", "nonin-ascii"),
    19200: ("contec-legacy",),
}
#: Protocols that answer a harmless command: (protocol, line speed, command).
_ASK: tuple[tuple[str, int, bytes], ...] = (
    ("contec-v7", 115200, ContecV7Decoder.start_command()),
    ("suntech-advantage", 9600, cuff_pressure_command()),
)


@dataclass(frozen=True, slots=True)
class FoundPort:
    """A serial port and what answered on it (None: nothing recognisable)."""

    path: Path
    protocol: str | None
    detail: str


def find_ports(folder: Path = SERIAL_BY_ID, *, listen_s: float = LISTEN_S) -> list[FoundPort]:
    """Every port under `folder` with a guess at its protocol."""
    if not folder.is_dir():
        return []
    paths = sorted(folder.iterdir())
    if not paths:
        return []
    # Each port on its own thread: an installer waits for the slowest port, not for all.
    with ThreadPoolExecutor(max_workers=len(paths)) as pool:
        return list(pool.map(lambda path: probe(path, listen_s=listen_s), paths))


def probe(path: Path, *, listen_s: float = LISTEN_S) -> FoundPort:
    """Guess the protocol on one port: listen first, then ask."""
    try:
        for baud, protocols in _LISTEN.items():
            data = _exchange(path, baud, b"", listen_s)
            guess = _best(data, protocols)
            if guess is not None:
                return FoundPort(path, guess, f"{baud} baud, frames decoded while listening")
        for protocol, baud, command in _ASK:
            data = _exchange(path, baud, command, listen_s / 2)
            if _decodes(data, protocol):
                return FoundPort(path, protocol, f"{baud} baud, answered a query")
    except (OSError, serial.SerialException) as exc:
        return FoundPort(path, None, f"cannot open: {exc}")
    return FoundPort(path, None, "no known protocol answered")


def _exchange(path: Path, baud: int, command: bytes, seconds: float) -> bytes:
    with serial.Serial(str(path), baud, timeout=0.1, exclusive=True) as port:
        if command:
            port.write(command)
        chunks: list[bytes] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            chunks.append(port.read(4096))
        return b"".join(chunks)


def _best(data: bytes, protocols: Iterable[str]) -> str | None:
    """The protocol that decodes the most valid records from `data`, with few bad frames."""
    scores: list[tuple[int, str]] = []
    for protocol in protocols:
        decoder = make_decoder(protocol, device="probe")
        decoder.feed(data, 0.0)
        if decoder.records and decoder.frames_bad <= decoder.records // 10:
            scores.append((decoder.records - decoder.frames_bad, protocol))
    if not scores:
        return None
    # Ties go to the first protocol listed (DF7 over DF2: the same frames, newer format).
    best = max(score for score, _ in scores)
    return next(protocol for score, protocol in scores if score == best)


def _decodes(data: bytes, protocol: str) -> bool:
    decoder = make_decoder(protocol, device="probe")
    decoder.feed(data, 0.0)
    if isinstance(decoder, SuntechAdvantageDecoder):
        return bool(decoder.take_replies())
    return decoder.records > 0


# --- the configuration ---------------------------------------------------------------------


def render_config(
    *,
    room_id: str,
    user: str,
    password_hash: str,
    ports: list[FoundPort],
    records_path: Path,
) -> str:
    """A commented configuration holding only what differs from the defaults."""
    lines = [
        "# sessiond configuration, written by `sessiond init`. Every key not written here has",
        "# its default; the full list with units and clinical sources is config/sessiond.toml",
        "# in the sources, and `sessiond check-config FILE` validates a change.",
        "",
        "[room]",
        f'id = "{room_id}"       # names the room on MQTT and in the record, never a patient',
        "",
        "[console]",
        'host = "127.0.0.1"            # bind beyond loopback only with [console] TLS configured',
        "port = 8080",
        "",
        f"[console.users.{user}]",
        f'password_hash = "{password_hash}"   # `sessiond hash-password` makes another',
        "",
        "[records]",
        f'path = "{records_path}"',
        "",
        "# --- Devices: the serial ports found, by their stable names --------------------------",
    ]
    named = _device_names(ports)
    if not named:
        lines += [
            "# No serial device was found. Plug the oximeter and the BP module in, run",
            "# `sessiond init` again, or name them here, e.g.:",
            "# [devices.spo2]",
            '# path = "/dev/serial/by-id/usb-FTDI_..."',
            '# decoder = "masimo-ascii1"',
        ]
    for name, port in named:
        lines += ["", f"[devices.{name}]", f'path = "{port.path}"']
        if port.protocol is None:
            lines += [f"# {port.detail}: set the decoder by hand", 'decoder = "masimo-ascii1"']
        else:
            lines += [f'decoder = "{port.protocol}"      # guessed: {port.detail}']
    if not any(p.protocol == "suntech-advantage" for _, p in named):
        lines += ["", "# No BP module found: the room runs without NIBP alarms and schedule."]
    return "\n".join(lines) + "\n"


def _device_names(ports: list[FoundPort]) -> list[tuple[str, FoundPort]]:
    """`spo2` for the first oximeter, `nibp` for the BP module, then `port2`, `port3` ..."""
    out: list[tuple[str, FoundPort]] = []
    used: set[str] = set()
    for k, port in enumerate(ports, start=1):
        if port.protocol == "suntech-advantage" and "nibp" not in used:
            name = "nibp"
        elif (
            port.protocol is not None
            and port.protocol != "suntech-advantage"
            and ("spo2" not in used)
        ):
            name = "spo2"
        else:
            name = f"port{k}"
        used.add(name)
        out.append((name, port))
    return out


def write_config(
    folder: Path,
    *,
    room_id: str,
    user: str,
    password_hash: str,
    ports: list[FoundPort],
    records_path: Path | None = None,
    force: bool = False,
    say: Callable[[str], None] = print,
) -> Path:
    """Write `folder/sessiond.toml` (refusing to overwrite one unless `force`)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sessiond.toml"
    if path.exists() and not force:
        msg = f"{path} exists: keep it, or write again with --force"
        raise FileExistsError(msg)
    records = records_path or folder / "sessiond.sqlite"
    text = render_config(
        room_id=room_id, user=user, password_hash=password_hash, ports=ports, records_path=records
    )
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)  # it holds a password hash
    for port in ports:
        say(f"{port.path}: {port.protocol or 'unknown'} ({port.detail})")
    return path


# --- backup --------------------------------------------------------------------------------


def backup(source: Path, target: Path) -> int:
    """Copy the record at `source` to `target` while it may be written; returns the sessions."""
    if not source.is_file():
        msg = f"{source}: no record there ([records] path)"
        raise FileNotFoundError(msg)
    if target.exists():
        msg = f"{target} exists: choose a new file for the backup"
        raise FileExistsError(msg)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst, pages=1024, sleep=0.01)  # in steps: the writer is never held long
            (check,) = dst.execute("PRAGMA integrity_check").fetchone()
            if check != "ok":
                msg = f"{target}: the copy fails its integrity check: {check}"
                raise sqlite3.DatabaseError(msg)
            (sessions,) = dst.execute("SELECT count(*) FROM sessions").fetchone()
        finally:
            dst.close()
    finally:
        src.close()
    return int(sessions)
