"""Session records made the way the daemon makes them: a Monitor on virtual time feeding a
real Recorder through the bus, into a real SQLite file.

`record_clinic(path)` writes three sessions:

- `MAIN` (room-1, 2 h 45 min, IV): two baseline BP readings, the dose at 10 min, every BP the
  schedule asks for (the forced one at dose + 40 min included), a desaturation that goes
  medium then high (latched) and is acknowledged, a note, a nurse's scene change, a probe
  off for 10 s, a daemon restart with a 2-minute gap that resumes the session, discharge
  readiness, and the end. Readings arrive after the end too (the devices keep sending).
- `OLD` (room-2, February): 20 minutes, no dose, ended; readings before its start belong to
  no session.
- `OPEN` (room-3, February): never ended.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sessiond.bus import Bus
from sessiond.clock import VirtualClock
from sessiond.config import Config
from sessiond.model import (
    NibpRequest,
    NurseAction,
    PhaseChanged,
    Quality,
    Reading,
    RoomChanged,
    Route,
)
from sessiond.records.store import Recorder
from sessiond.session.monitor import Monitor

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from sessiond.bus import Subscription
    from sessiond.model import Event

MAIN, OLD, OPEN = "7f3a9c21b0d4e865", "1b2c3d4e5f607182", "9e8d7c6b5a493827"
MAIN_START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
OLD_START = datetime(2026, 2, 10, 14, 0, tzinfo=UTC)
OPEN_START = datetime(2026, 2, 20, 8, 0, tzinfo=UTC)

DOSE_T = 600.0
#: The BP module answers a request this long after it.
BP_TAKES_S = 35.0
DESAT = (1500.0, 1540.0)  # SpO2 88 % for 30 s, then 83 % for 10 s
ACK_T, NOTE_T, SCENE_T = 1580.0, 1590.0, 2000.0
PROBE_OFF = (4000.0, 4010.0)
#: The daemon stops after the reading at STOP_T - 1 and resumes the session at RESUME_T.
STOP_T, RESUME_T = 6000.0, 6120.0
END_T = 9900.0
NOTE = "Chin lift, rousable to voice; SpO2 back to 96 % on room air. <b>not bold</b>"
OVERRIDE_NOTE = "Baseline BP discussed with Dr. on call"


def bp_at(t: float) -> tuple[int, int, int, int]:
    """SYS, DIA, MAP and PR the BP module measures at `t`: a rise peaking at dose + 40 min."""
    since_dose = t - DOSE_T
    rise = 0.0 if since_dose < 0 else max(0.0, 1.0 - abs(since_dose - 2400.0) / 3600.0)
    sys = round(122 + (2 if t < 200 else 0) + 16 * rise)
    dia = round(78 + (2 if t < 200 else 0) + 10 * rise)
    return sys, dia, round(dia + (sys - dia) / 3), 74


def oximetry_at(t: float) -> Reading:
    second = int(t)
    if DESAT[0] <= t < DESAT[0] + 30:
        return Reading(t=t, device="spo2", spo2=88, pr=84, pi=1.2)
    if DESAT[0] + 30 <= t < DESAT[1]:
        return Reading(t=t, device="spo2", spo2=83, pr=88, pi=0.9)
    if PROBE_OFF[0] <= t < PROBE_OFF[1]:
        return Reading(t=t, device="spo2", flags=Quality.SENSOR_OFF)
    return Reading(t=t, device="spo2", spo2=96 + second % 3, pr=70 + second % 5, pi=3.1)


@dataclass
class _Run:
    """One daemon run: a monitor on a virtual clock, its bus and a recording recorder."""

    path: Path
    room: str
    wall_origin: datetime
    clock: VirtualClock = field(init=False)
    bus: Bus = field(init=False)
    monitor: Monitor = field(init=False)
    recorder: Recorder = field(init=False)
    sub: Subscription = field(init=False)
    task: asyncio.Task[None] = field(init=False)
    bp_due: list[float] = field(default_factory=list)

    async def open(self, t: float) -> None:
        self.clock = VirtualClock(start=t, wall_origin=self.wall_origin)
        self.bus = Bus()
        self.monitor = Monitor(config=Config(), streaming=["spo2"], nibp=["nibp"], start=t)
        self.recorder = Recorder(path=self.path, clock=self.clock, room_id=self.room)
        await self.recorder.open()
        self.sub = self.bus.subscribe("recorder", maxsize=1_000_000)
        self.task = asyncio.create_task(self.recorder.run(self.sub))

    async def close(self) -> None:
        self.bus.close()
        await self.task
        await self.recorder.close()

    def emit(self, events: list[Event]) -> None:
        for event in events:
            self.bus.publish(event)
            if isinstance(event, NibpRequest):
                self.bp_due.append(event.t + BP_TAKES_S)
            elif isinstance(event, PhaseChanged):
                self.bus.publish(_scene(event.t, event.phase.value, source="phase"))

    def at(self, t: float) -> None:
        self.clock.t = t
        self.emit(self.monitor.advance(t))

    def act(self, t: float, command: Callable[[float], list[Event]]) -> None:
        self.at(t)
        self.emit(command(t))

    def reading(self, reading: Reading) -> None:
        self.at(reading.t)
        self.bus.publish(reading)
        self.emit(self.monitor.on_reading(reading))

    def seconds(
        self, start: float, stop: float, actions: dict[float, Callable[[float], None]]
    ) -> None:
        """Oximetry each second in [start, stop), BP when asked for, actions at their times."""
        for second in range(int(start), int(stop)):
            t = float(second)
            for due in sorted(d for d in self.bp_due if d <= t):
                self.bp_due.remove(due)
                sys, dia, mean, pr = bp_at(due)
                self.reading(Reading(t=due, device="nibp", sys=sys, dia=dia, map=mean, pr=pr))
            if t in actions:
                actions[t](t)
            self.reading(oximetry_at(t))


def _scene(t: float, scene: str, *, source: str) -> RoomChanged:
    light = {"baseline": 60.0, "onset": 30.0, "effect": 20.0, "recovery": 50.0}.get(scene, 70.0)
    return RoomChanged(
        t=t,
        scene=scene,
        light_pct=light,
        colour_temp_k=2700,
        playlist=scene,
        volume_pct=30,
        source=source,
    )


async def record_main(path: Path) -> None:
    """The scripted IV session `MAIN` (see the module docstring)."""
    run = _Run(path=path, room="room-1", wall_origin=MAIN_START)
    await run.open(0.0)
    m = run.monitor

    def start(t: float) -> None:
        run.act(
            t,
            lambda t: m.start_session(
                t, session_id=MAIN, route=Route.IV, user="ana", source="console"
            ),
        )

    def dose(t: float) -> None:
        # The pre-dose checklist and a manual entry, as the console records them.
        items = [item.id for item in m.config.checklists.predose]
        run.act(t, lambda t: m.checklist(t, kind="predose", checked=items[:-1],
                                         reason=None, user="ana", source="console"))  # fmt: skip
        entry = {"kind": "side_effect", "effect": "nausea", "severity": "mild"}
        run.act(t, lambda t: m.add_entry(t, entry=entry, user="ana", source="console"))
        run.act(t, lambda t: m.mark_dose(t, user="ana", source="console"))

    def ack(t: float) -> None:
        run.act(t, lambda t: m.acknowledge(t, alarm_id="spo2_low", user="ben", source="console"))

    def note(t: float) -> None:
        run.act(t, lambda t: m.add_note(t, text=NOTE, user="ben", source="console"))

    def scene(t: float) -> None:
        run.emit(
            [
                NurseAction(
                    t=t,
                    action="scene",
                    user="ben",
                    source="console",
                    detail={"scene": "effect", "pinned": False},
                ),
                _scene(t, "effect", source="console ben"),
            ]
        )

    start(0.0)
    run.seconds(0.0, STOP_T, {DOSE_T: dose, ACK_T: ack, NOTE_T: note, SCENE_T: scene})
    await run.close()

    # The daemon restarts and resumes the session from the record, as `Daemon.run` does.
    run = _Run(path=path, room="room-1", wall_origin=MAIN_START)
    await run.open(RESUME_T)
    session = await run.recorder.open_session(
        max_age_s=24 * 3600.0, baseline_window_s=300.0, nibp_devices=frozenset({"nibp"})
    )
    assert session is not None
    assert session.session_id == MAIN
    run.monitor.alarms.restart(RESUME_T)
    run.emit(run.monitor.resume(RESUME_T, session=session))
    m = run.monitor

    def end(t: float) -> None:
        run.act(t, lambda t: m.end_session(t, user="ana", source="console"))

    run.seconds(RESUME_T, END_T + 30.0, {END_T: end})
    await run.close()


async def record_short(
    path: Path, *, session_id: str, room: str, start: datetime, minutes: float, end: bool
) -> None:
    """A short session without a dose; a minute of readings before it belongs to no session."""
    run = _Run(path=path, room=room, wall_origin=start - timedelta(seconds=60))
    await run.open(0.0)
    run.seconds(0.0, 60.0, {})
    run.act(
        60.0,
        lambda t: run.monitor.start_session(
            t, session_id=session_id, route=Route.IM, user="cai", source="mqtt"
        ),
    )
    stop = 60.0 + minutes * 60.0
    run.seconds(60.0, stop, {})
    if end:
        run.act(stop, lambda t: run.monitor.end_session(t, user="cai", source="mqtt"))
    await run.close()


async def record_clinic(path: Path) -> None:
    """The three sessions of the module docstring, in one record."""
    await record_short(path, session_id=OLD, room="room-2", start=OLD_START, minutes=20, end=True)
    await record_short(
        path, session_id=OPEN, room="room-3", start=OPEN_START, minutes=10, end=False
    )
    await record_main(path)
