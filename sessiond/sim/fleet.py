"""Many rooms on one broker: N `sessiond demo` processes, each a room with its own simulated
devices, record and console, all publishing to one Mosquitto; and an overview that follows
every room from the broker as the clinic overview does (`sessiond/+/state|alarm|event`).

Used by the many-rooms test and by `bench/many_rooms.py`, which prints the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiomqtt

if TYPE_CHECKING:
    from collections.abc import Callable

#: A short scenario: a desaturation deep enough for a latched high, then the probe off.
SCENARIO = """
name = "fleet"
description = "A desaturation at 30 s (to 82 %, 40 s), the probe off at 100 s for 10 s."
seed = 5
duration_s = 150
[patient]
spo2 = 97.5
pr = 72
pi = 3.0
resp_rate_per_min = 14
[[events]]
kind = "desaturation"
at_s = 30
duration_s = 40
spo2 = 82
ramp_s = 4
[[events]]
kind = "sensor_off"
at_s = 100
duration_s = 10
"""


@dataclass
class Room:
    """One room's process and where it keeps its record."""

    room_id: str
    workdir: Path
    process: asyncio.subprocess.Process | None = None

    @property
    def record(self) -> Path:
        return self.workdir / "r.sqlite"


@dataclass
class Overview:
    """What a clinic overview sees of every room on the broker."""

    messages: int = 0
    alarms: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)
    #: Events are QoS 1, at least once: a room sends one again when the broker did not
    #: acknowledge it in time. An alarm transition's bytes again (its time, id, priority and
    #: state: no two transitions have them all) are that transition again, taken once.
    transitions_seen: set[tuple[str, bytes]] = field(default_factory=set)
    duplicates: int = 0
    online: set[str] = field(default_factory=set)
    received_at: dict[str, float] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def until(self, done: Callable[[Overview], bool]) -> None:
        """Wait (no polling) until what the overview has seen satisfies `done`."""
        while not done(self):
            self.changed.clear()
            await self.changed.wait()

    def take(self, topic: str, payload: bytes) -> None:
        self.changed.set()
        self.messages += 1
        _, room_id, leaf = topic.split("/", 2)
        self.received_at[room_id] = time.monotonic()
        if leaf == "availability":
            if payload == b"online":
                self.online.add(room_id)
            else:
                self.online.discard(room_id)
        elif leaf == "event":
            event = json.loads(payload)
            if event.get("type") != "alarm":
                return
            if (room_id, payload) in self.transitions_seen:
                self.duplicates += 1
                return
            self.transitions_seen.add((room_id, payload))
            self.alarms.setdefault(room_id, []).append(
                (event["id"], event["priority"], event["state"])
            )


def room_config(room: Room, broker_port: int, scenario: Path) -> Path:
    path = room.workdir / "room.toml"
    path.write_text(
        f'[room]\nid = "{room.room_id}"\n'
        f"[console]\nport = 0\n"
        f'[records]\npath = "{room.record}"\n'
        f"[music]\nenabled = false\n"
        f"[alarm_audio]\nenabled = false\n"
        f'[sim]\nscenario = "{scenario}"\n'
        f'[devices.spo2]\ndecoder = "masimo-ascii1"\n'
        f"[mqtt]\nenabled = true\nport = {broker_port}\ndiscovery = false\n"
        f"vitals_max_rate_hz = 1\n",
        encoding="utf-8",
    )
    return path


async def start_rooms(count: int, *, broker_port: int, workdir: Path, speed: float) -> list[Room]:
    """Start `count` rooms; returns once every process is running."""
    scenario = workdir / "fleet.toml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    rooms = [Room(f"room-{k:02d}", workdir / f"room-{k:02d}") for k in range(1, count + 1)]
    for room in rooms:
        room.workdir.mkdir(parents=True, exist_ok=True)
        config = room_config(room, broker_port, scenario)
        room.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sessiond", "demo", "--speed", str(speed),
            "--config", str(config), cwd=room.workdir, start_new_session=True,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
    return rooms


async def stop_rooms(rooms: list[Room], *, timeout_s: float = 30.0) -> list[int | None]:
    """SIGTERM every room (a clean shutdown) and wait; SIGKILL what does not exit in time."""
    for room in rooms:
        if room.process is not None and room.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(room.process.pid, signal.SIGTERM)
    codes: list[int | None] = []
    for room in rooms:
        if room.process is None:
            codes.append(None)
            continue
        try:
            async with asyncio.timeout(timeout_s):
                codes.append(await room.process.wait())
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(room.process.pid, signal.SIGKILL)
            codes.append(await room.process.wait())
    return codes


async def follow(broker_port: int, overview: Overview, stop: asyncio.Event) -> None:
    """Subscribe as the overview does and fold every message into `overview`."""
    async with aiomqtt.Client("127.0.0.1", broker_port, identifier="overview") as client:
        await client.subscribe(
            [("sessiond/+/availability", 1), ("sessiond/+/state", 1),
             ("sessiond/+/alarm", 1), ("sessiond/+/event", 1), ("sessiond/+/vitals", 0)]
        )  # fmt: skip
        reader = asyncio.ensure_future(_read(client, overview))
        await stop.wait()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


async def _read(client: aiomqtt.Client, overview: Overview) -> None:
    async for message in client.messages:
        payload = message.payload if isinstance(message.payload, bytes) else b""
        overview.take(str(message.topic), payload)


async def command_round_trip(broker_port: int, room_id: str, *, timeout_s: float = 10.0) -> float:
    """Seconds from a `cmd/note` on the broker to the room's recorded action on `event`."""
    marker = f"rt-{time.monotonic_ns()}"
    async with aiomqtt.Client("127.0.0.1", broker_port) as client:
        await client.subscribe(f"sessiond/{room_id}/event", qos=1)
        started = time.monotonic()
        await client.publish(f"sessiond/{room_id}/cmd/pause", json.dumps({"user": marker}), qos=1)
        async with asyncio.timeout(timeout_s):
            async for message in client.messages:
                payload = message.payload if isinstance(message.payload, bytes) else b"{}"
                event: dict[str, Any] = json.loads(payload)
                if event.get("type") == "action" and event.get("user") == marker:
                    return time.monotonic() - started
    msg = f"{room_id}: no answer to a command"
    raise TimeoutError(msg)


def recorded_alarms(room: Room) -> list[tuple[str, str, str]]:
    """The room's alarm transitions as its record holds them, in order."""
    db = sqlite3.connect(f"file:{room.record}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT alarm_id, priority, state FROM alarms ORDER BY id").fetchall()
    finally:
        db.close()
    return [(a, p, s) for a, p, s in rows]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks
