"""The daemon of one room: links → decoders → monitor → bus → recorder and console.

The monitor runs synchronously inside the link's data callback and on a loop timer at its
next deadline, so nothing optional (console, recorder, later MQTT and music) can delay an
alarm: they only ever read from their own bus subscriptions.
"""

from __future__ import annotations

import asyncio
import copy
import errno
import logging
import secrets
import sqlite3
import sys
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from sessiond.bus import Bus
from sessiond.clock import LoopClock
from sessiond.console.auth import hash_password
from sessiond.console.overview import Overview
from sessiond.console.server import create_console_app, start_console, tls_context
from sessiond.console.settings import ConsoleUser
from sessiond.devices import make_decoder
from sessiond.devices.link import SerialLink
from sessiond.devices.nibp import NibpLink
from sessiond.errors import ConfigError
from sessiond.model import (
    AlarmState,
    AlarmTransition,
    DeviceStatus,
    NibpRequest,
    NurseAction,
    Priority,
)
from sessiond.records.capture import CaptureWriter
from sessiond.records.read import RecordReader
from sessiond.records.store import Recorder, RecordError
from sessiond.room.alarm_tone import AlarmTonePlayer
from sessiond.room.lights import LightDriver
from sessiond.room.mqtt import MqttBridge
from sessiond.room.music import MusicPlayer
from sessiond.room.scenes import RoomController
from sessiond.service import ServiceNotifier
from sessiond.session.alarms import INF
from sessiond.session.commands import CommandRejected, RecordUnavailable
from sessiond.session.monitor import Monitor
from sessiond.speed import DEVICE_TIMEOUT_MIN_REAL_S, MAX_DEMO_SPEED
from sessiond.status import RoomStatus

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from aiohttp import web

    from sessiond.config import Config
    from sessiond.model import DoseUnit, Event, NibpFailed, Reading, Route
    from sessiond.room.music import MusicStatus
    from sessiond.session.state import OpenSession
    from sessiond.sim.demo import DemoDirector

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

#: An open session older than this is not resumed after a restart: it was left open.
RESUME_MAX_AGE_S = 24 * 3600.0
#: Pleth samples a second of the oximeters that send a waveform (reference/devices.md).
PLETH_HZ = {"nonin-df7": 75.0, "nonin-df2": 75.0, "contec-v7": 60.0, "contec-legacy": 60.0}
#: The user the demo creates when the configuration names none.
DEMO_USER, DEMO_PASSWORD = "nurse", "demo"


class Daemon:
    """One room's daemon; implements `SessionControl` for the console (and later MQTT)."""

    def __init__(
        self,
        *,
        config: Config,
        clock: LoopClock,
        device_paths: Mapping[str, str],
        capture: CaptureWriter | None = None,
        users: Mapping[str, ConsoleUser] | None = None,
    ) -> None:
        config = _with_device_timeouts(config, clock)
        self.config = config
        self.clock = clock
        self.bus = Bus()
        self._capture = capture
        self._users = dict(config.console.users if users is None else users)
        decoders = {
            name: make_decoder(dev.decoder, device=name) for name, dev in config.devices.items()
        }
        streaming = [name for name, d in decoders.items() if d.streaming]
        nibp = [name for name, d in decoders.items() if not d.streaming]
        self.monitor = Monitor(
            config=config, streaming=streaming, nibp=nibp, start=clock.now(), predose_gate=True
        )
        self.links = {
            name: SerialLink(
                name=name,
                path=device_paths[name],
                decoder=decoder,
                clock=clock,
                on_readings=self._on_readings,
                on_status=self._on_status,
                on_frames=self._on_frames,
                on_waveform=self.bus.publish,
                on_bytes=None if capture is None else capture.write,
                baudrate=config.devices[name].baudrate,
                silence_timeout_s=config.devices[name].silence_timeout_s,
            )
            for name, decoder in decoders.items()
        }
        self.nibp = {
            name: NibpLink(
                link=self.links[name],
                clock=clock,
                config=config.nibp,
                on_failed=self._on_nibp_failed,
            )
            for name in nibp
        }
        for name, nibp_link in self.nibp.items():
            self.links[name].on_open = nibp_link.on_open
            self.links[name].on_fed = nibp_link.on_fed
        self.recorder = Recorder(
            path=config.records.path,
            clock=clock,
            room_id=config.room.id,
            speed=clock.speed,
            on_fault=self._on_record_fault,
        )
        #: The console reads the session back from the record (entries, trends).
        self.reader = RecordReader(config.records.path, bp_devices=frozenset(nibp))
        # The room: lights over MQTT (when configured), music on libvlc (loaded lazily).
        self.music = (
            MusicPlayer(config.music, clock=clock, on_change=self._on_music)
            if config.music.enabled
            else None
        )
        self._music_shown: tuple[bool, str] | None = None
        #: libvlc has been tried (it loads in the background): its status is worth showing.
        self._music_tried = False
        self.lights = LightDriver(
            config.lights, publish=self._publish_mqtt, clock=clock, speed=clock.speed
        )
        self.mqtt: MqttBridge | None = None
        self.overview: Overview | None = None
        if config.mqtt.enabled:
            self.mqtt = MqttBridge(
                settings=config.mqtt,
                room_id=config.room.id,
                # Its own queue: a dead broker never holds up the bus or the record.
                subscription=self.bus.subscribe("mqtt", maxsize=1024),
                status=RoomStatus(config.room.id),
                control=self,
                now=clock.now,
            )
            self.mqtt.attach_lights(self.lights)
            self.mqtt.add_state("music", self._music_state)
            # The clinic overview: every room on the broker, this one included.
            self.overview = Overview(config.mqtt.prefix)
            for topic in self.overview.topics():
                self.mqtt.subscribe(topic, self.overview.on_message)
            self.mqtt.add_state("console", self._console_state)
            # A daemon without devices is a nurses' station: no tile of its own.
            self.mqtt.add_state("station", lambda: not config.devices)
        self.room = RoomController(
            config=config.scenes,
            lights=self.lights,
            music=self.music,
            now=clock.now,
            publish=self.bus.publish,
            room_id=config.room.id,
        )
        # The room's own alarm speaker: high alarms and no console watching (DESIGN §9).
        self.alarm_audio = AlarmTonePlayer(
            config.alarm_audio,
            room_id=config.room.id,
            reminder_s=config.alarms.audio.reminder_s,
            now=clock.now,
            on_status=self._on_alarm_audio,
        )
        self.console_port: int | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = INF
        self._stopping = False
        #: Signed-in console pages connected now, and the timer that raises
        #: `console_unwatched` when there are none during a session.
        self._watchers = 0
        self._unwatched_timer: asyncio.TimerHandle | None = None
        self._unwatched = False

    # SessionControl -------------------------------------------------------------------

    def now(self) -> float:
        return self.clock.now()

    async def start_session(self, *, route: Route, user: str, source: str) -> str:
        session_id = secrets.token_hex(8)
        await self._command(
            lambda now: self.monitor.start_session(
                now, session_id=session_id, route=route, user=user, source=source
            )
        )
        logger.info("session %s started (%s) by %s via %s", session_id, route, user, source)
        return session_id

    async def mark_dose(self, *, user: str, source: str, reason: str | None = None) -> None:
        await self._command(
            lambda now: self.monitor.mark_dose(now, user=user, source=source, reason=reason)
        )
        logger.info("dose marked by %s via %s%s", user, source, " (gate overridden)" * bool(reason))

    async def start_infusion(
        self,
        *,
        amount: float,
        unit: DoseUnit,
        planned_min: float,
        user: str,
        source: str,
        reason: str | None = None,
    ) -> None:
        await self._command(
            lambda now: self.monitor.start_infusion(
                now, amount=amount, unit=unit, planned_min=planned_min, user=user,
                source=source, reason=reason,
            )
        )  # fmt: skip
        logger.info("infusion started (%g %s over %g min) by %s via %s%s", amount, unit,
                    planned_min, user, source, " (gate overridden)" * bool(reason))  # fmt: skip

    async def pause_infusion(self, *, reason: str, user: str, source: str) -> None:
        # Reasons stay in the record: they may name the patient.
        await self._command(
            lambda now: self.monitor.pause_infusion(now, reason=reason, user=user, source=source)
        )
        logger.info("infusion paused by %s via %s", user, source)

    async def resume_infusion(self, *, reason: str, user: str, source: str) -> None:
        await self._command(
            lambda now: self.monitor.resume_infusion(now, reason=reason, user=user, source=source)
        )
        logger.info("infusion resumed by %s via %s", user, source)

    async def stop_infusion(
        self,
        *,
        amount: float,
        unit: DoseUnit | None,
        user: str,
        source: str,
        reason: str | None = None,
    ) -> None:
        await self._command(
            lambda now: self.monitor.stop_infusion(
                now, amount=amount, unit=unit, user=user, source=source, reason=reason
            )
        )
        logger.info("infusion stopped (%g given) by %s via %s", amount, user, source)

    async def end_session(self, *, user: str, source: str) -> None:
        await self._command(lambda now: self.monitor.end_session(now, user=user, source=source))
        logger.info("session ended by %s via %s", user, source)

    async def acknowledge(self, *, alarm_id: str, user: str, source: str) -> None:
        await self._command(
            lambda now: self.monitor.acknowledge(now, alarm_id=alarm_id, user=user, source=source)
        )
        logger.info("%s acknowledged by %s via %s", alarm_id, user, source)

    async def pause_audio(self, *, user: str, source: str) -> None:
        await self._command(lambda now: self.monitor.pause_audio(now, user=user, source=source))
        logger.info("alarm audio paused by %s via %s", user, source)

    async def add_note(self, *, text: str, user: str, source: str) -> None:
        # The text stays in the record: it may name the patient, so it is never logged.
        await self._command(
            lambda now: self.monitor.add_note(now, text=text, user=user, source=source)
        )
        logger.info("note added by %s via %s", user, source)

    async def add_entry(self, *, entry: dict[str, Any], user: str, source: str) -> None:
        # Free text in an entry stays in the record, as a note's does.
        await self._command(
            lambda now: self.monitor.add_entry(now, entry=entry, user=user, source=source)
        )
        logger.info("%s entry added by %s via %s", entry.get("kind"), user, source)

    async def checklist(
        self, *, kind: str, checked: list[str], reason: str | None, user: str, source: str
    ) -> None:
        await self._command(
            lambda now: self.monitor.checklist(
                now, kind=kind, checked=checked, reason=reason, user=user, source=source
            )
        )
        logger.info("%s checklist confirmed by %s via %s", kind, user, source)

    async def measure_nibp(self, *, user: str, source: str) -> None:
        if any(link.measuring for link in self.nibp.values()):
            msg = "a BP measurement is already running"
            raise CommandRejected(msg)
        await self._command(lambda now: self.monitor.measure_nibp(now, user=user, source=source))
        logger.info("BP measurement asked by %s via %s", user, source)

    # RoomControl ------------------------------------------------------------------------

    async def set_scene(self, *, scene: str | None, pinned: bool, user: str, source: str) -> None:
        self._record_writable()
        await self.room.set_scene(scene=scene, pinned=pinned, source=f"{source} {user}")
        self._record_action("scene", user, source, {"scene": scene, "pinned": pinned})
        await self._recorded()

    async def set_volume(self, *, volume_pct: int, pinned: bool, user: str, source: str) -> None:
        self._record_writable()
        await self.room.set_volume(volume_pct=volume_pct, pinned=pinned, source=f"{source} {user}")
        self._record_action("volume", user, source, {"volume_pct": volume_pct, "pinned": pinned})
        await self._recorded()

    def _record_action(self, action: str, user: str, source: str, detail: dict[str, Any]) -> None:
        self.bus.publish(
            NurseAction(t=self.clock.now(), action=action, user=user, source=source, detail=detail)
        )
        logger.info("%s by %s via %s: %s", action, user, source, detail)

    def _publish_mqtt(self, topic: str, payload: str | bytes, *, qos: int, retain: bool) -> None:
        """The lights' commands go through the bridge; without a broker, nowhere."""
        if self.mqtt is not None:
            self.mqtt.publish(topic, payload, qos=qos, retain=retain)

    def _on_music(self, status: MusicStatus) -> None:
        """Music coming or going is shown like a device link (console, MQTT, record)."""
        if self.mqtt is not None:
            self.mqtt.state_changed()  # the playlist, volume or duck in `state`
        detail = "playing" if status.available else status.reason or "unavailable"
        if not self._music_tried or (status.available, detail) == self._music_shown:
            return
        self._music_shown = (status.available, detail)
        self.bus.publish(DeviceStatus(t=self.clock.now(), device="music",
                                      connected=status.available, detail=detail))  # fmt: skip

    def _music_started(self, _task: asyncio.Task[None]) -> None:
        self._music_tried = True
        if self.music is not None:
            self._on_music(self.music.status())

    def _on_alarm_audio(self, available: bool, detail: str) -> None:
        """The room's alarm speaker is shown like a device link (console, MQTT, record)."""
        self.bus.publish(DeviceStatus(t=self.clock.now(), device="alarm_audio",
                                      connected=available, detail=detail))  # fmt: skip

    def _watchers_changed(self, count: int) -> None:
        self._watchers = count
        self._check_watched()

    def _check_watched(self) -> None:
        """`console_unwatched`: a running session with no signed-in console for a while."""
        watched = self._watchers > 0 or not self.monitor.running
        if watched:
            if self._unwatched_timer is not None:
                self._unwatched_timer.cancel()
                self._unwatched_timer = None
            if self._unwatched:
                self._unwatched = False
                self._report("console_unwatched", active=False)
        elif self._unwatched_timer is None and not self._unwatched:
            loop = asyncio.get_running_loop()
            delay = self.config.alarm_audio.unwatched_after_s
            self._unwatched_timer = loop.call_later(delay, self._now_unwatched)

    def _now_unwatched(self) -> None:
        self._unwatched_timer = None
        if self._watchers == 0 and self.monitor.running:
            self._unwatched = True
            logger.warning("no signed-in console has watched the session for %.0f s",
                           self.config.alarm_audio.unwatched_after_s)  # fmt: skip
            self._report("console_unwatched", active=True)

    def _report(self, alarm_id: str, *, active: bool) -> None:
        try:
            self._run("advance", self.monitor.advance, self.clock.now())
            self._emit(self.monitor.report(self.clock.now(), alarm_id, active=active))
        except Exception:
            logger.exception("monitor: cannot report %s", alarm_id)
        finally:
            self._reschedule()

    def _console_ready(self) -> None:
        if self.mqtt is not None:
            self.mqtt.state_changed()  # the console's port is known now

    def _console_state(self) -> dict[str, Any]:
        """Where this room's console is, for the overview's links."""
        c = self.config.console
        return {"host": c.host, "port": self.console_port, "tls": bool(c.tls_cert)}

    def _music_state(self) -> dict[str, Any]:
        if self.music is None:
            return {"available": False, "reason": "disabled in [music]"}
        status = self.music.status()
        return {
            "available": status.available,
            "reason": status.reason,
            "playlist": status.playlist,
            "volume_pct": status.volume_pct,
            "ducked": status.ducked,
            "playing": status.playing,
        }

    async def _command(self, act: Callable[[float], list[Event]]) -> None:
        """Run a nurse command on the monitor now; return once its record is on disk."""
        self._record_writable()
        now = self.clock.now()
        try:
            self._emit(self.monitor.advance(now))
            self._emit(act(now))  # CommandRejected propagates: nothing was published for it
        finally:
            self._reschedule()
            self._check_watched()  # a session started or ended
        await self._recorded()

    def _record_writable(self) -> None:
        """Refuse a command up front while its record could not be written."""
        reason = self.recorder.failing
        if reason is not None:
            msg = f"the record cannot be written ({reason}): refused, nothing was changed"
            raise RecordUnavailable(msg)

    async def _recorded(self) -> None:
        """Wait for the command's record; say so when it did not reach the disk."""
        if not await self.recorder.sync():
            why = self.recorder.failing or "the disk is slow"
            msg = (
                f"done, but not yet in the record ({why}): it is kept and written when the"
                " record works again"
            )
            raise RecordUnavailable(msg)

    def _on_record_fault(self, reason: str | None) -> None:
        """The record stopped (or started again) being written: `record_fault` says so."""
        try:
            self._emit(self.monitor.report(self.clock.now(), "record_fault", active=bool(reason)))
        except Exception:
            logger.exception("monitor: cannot raise record_fault")
            self._monitor_fault()
        finally:
            self._reschedule()

    def _recorder_ended(self, task: asyncio.Task[None]) -> None:
        """A recorder that stops by a bug is a lasting `record_fault`, never a silent loss."""
        if task.cancelled() or (exc := task.exception()) is None:
            return
        logger.error("recorder: stopped by an error; nothing more is recorded", exc_info=exc)
        self.recorder.failing = f"the recorder stopped: {exc!r}"
        self._on_record_fault(self.recorder.failing)

    # The vitals path ------------------------------------------------------------------
    # Every monitor call is guarded: a fault in one rule or consumer is logged and shown as
    # `monitor_fault`, and the readings, the rest of the rules and the timer go on.

    def _on_readings(self, readings: list[Reading]) -> None:
        monitor, run = self.monitor, self._run
        try:
            for reading in readings:
                run("advance", monitor.advance, reading.t)
                self.bus.publish(reading)
                run("reading", monitor.on_reading, reading)
        finally:
            self._reschedule()

    def _on_frames(self, device: str, t: float) -> None:
        """Frames that repeat `device`'s last reading (no reading made): the device is there."""
        monitor, run = self.monitor, self._run
        try:
            run("advance", monitor.advance, t)
            run("frames", lambda at: monitor.on_frames(device, at), t)
        finally:
            self._reschedule()

    def _on_status(self, status: DeviceStatus) -> None:
        self.bus.publish(status)
        try:
            self._run("advance", self.monitor.advance, status.t)
            self._run("device status", self.monitor.device_status, status)
        finally:
            self._reschedule()

    def _on_nibp_failed(self, failure: NibpFailed) -> None:
        self.bus.publish(failure)
        try:
            self._run("advance", self.monitor.advance, failure.t)
            self._run("BP failure", self.monitor.nibp_failed, failure.t)
        finally:
            self._reschedule()

    def _run(self, what: str, step: Callable[[_T], list[Event]], arg: _T) -> None:
        try:
            events = step(arg)
        except Exception:
            logger.exception("monitor: %s failed; monitoring goes on", what)
            self._monitor_fault()
            return
        self._emit(events)

    def _monitor_fault(self) -> None:
        """Show the fault as a technical alarm, even when the alarm engine is what failed."""
        now = self.clock.now()
        try:
            self._emit(self.monitor.report(now, "monitor_fault", active=True))
        except Exception:
            logger.exception("monitor: cannot raise monitor_fault through the engine")
            fault = AlarmTransition(
                t=now, alarm_id="monitor_fault", priority=Priority.HIGH, state=AlarmState.ACTIVE
            )
            self.bus.publish(fault)

    def _emit(self, events: list[Event]) -> None:
        faults = self.monitor.alarms.faults
        while faults:
            part, exc = faults.pop(0)
            logger.error("monitor: %s failed and is out of service; monitoring goes on: %r",
                         part, exc, exc_info=exc)  # fmt: skip
        for event in events:
            self.bus.publish(event)
            if isinstance(event, NibpRequest):
                for name, link in self.nibp.items():
                    try:
                        link.measure(event.reason)
                    except Exception:
                        logger.exception("%s: cannot start a measurement", name)

    def _reschedule(self) -> None:
        """Arm one loop timer at the monitor's next deadline (delays, phases, silence)."""
        if self._stopping:
            return
        try:
            due = self.monitor.next_due()
        except Exception:
            logger.exception("monitor: next deadline unknown; trying again in 1 s")
            self._monitor_fault()
            due = self.clock.now() + 1.0
        if due == self._timer_due:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_due = due
        if due < INF:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_at(self.clock.loop_time(due), self._on_timer)

    def _on_timer(self) -> None:
        self._timer, self._timer_due = None, INF
        try:
            self._run("timer", self.monitor.advance, self.clock.now())
        finally:
            self._reschedule()

    # Lifetime ---------------------------------------------------------------------------

    async def _open_session(self) -> OpenSession | None:
        """The room's open session after a restart; the clock continues its time axis."""
        session = await self.recorder.open_session(
            max_age_s=RESUME_MAX_AGE_S,
            baseline_window_s=self.config.baseline.window_min * 60.0,
            nibp_devices=self.monitor.nibp_devices,
        )
        if session is not None:
            wall = None
            if self.clock.speed != 1.0 and session.started_wall is not None:
                # Virtual stamps: the axis continues from the record's, not from real time.
                wall = session.started_wall + timedelta(
                    seconds=session.resume_t - session.started_t
                )
            self.clock.continue_at(session.resume_t, wall=wall)
            self.monitor.alarms.restart(self.clock.now())
        return session

    def _resume(self, session: OpenSession | None) -> None:
        """Take up the session where its timeline is now, showing what it showed."""
        if session is None:
            return
        self._emit(self.monitor.resume(self.clock.now(), session=session))
        self._reschedule()
        logger.info("session %s resumed (%s)", session.session_id, self.monitor.phase)

    async def _start(self) -> tuple[OpenSession | None, web.AppRunner]:
        """Open the record and the console; a setting that cannot work here is a `ConfigError`
        naming the cause and the setting to change (no traceback, exit 2)."""
        try:
            await self.recorder.open()
            session = await self._open_session()
        except RecordError as exc:
            await self.recorder.close()
            raise ConfigError([f"sessiond: {exc}"]) from None
        except sqlite3.Error as exc:
            await self.recorder.close()
            path = self.recorder.path
            msg = f"sessiond: {path}: cannot read the record ({exc}); check [records] path"
            raise ConfigError([msg]) from None
        console = create_console_app(
            bus=self.bus,
            control=self,
            users=self._users,
            room_id=self.config.room.id,
            timeline=self.config.timeline,
            nibp=self.config.nibp,
            settings=self.config.console,
            audio=self.config.alarms.audio,
            on_watchers=self._watchers_changed,
            checklists=self.config.checklists,
            records=self.reader,
            predose_gate=self.monitor.predose_gate,
            pleth_rates={
                name: PLETH_HZ[dev.decoder]
                for name, dev in self.config.devices.items()
                if dev.decoder in PLETH_HZ
            },
            overview=self.overview,
        )
        host, port = self.config.console.host, self.config.console.port
        try:
            runner, self.console_port = await start_console(
                console, host=host, port=port, ssl_context=tls_context(self.config.console)
            )
        except OSError as exc:
            await self.recorder.close()
            why = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            msg = (
                f"sessiond: the console cannot listen on {host}:{port} ({why or exc}); set"
                " [console] host and port to a free address (demo: --port)"
            )
            raise ConfigError([msg]) from None
        return session, runner

    async def run(self, *, on_ready: Callable[[Daemon], None] | None = None) -> None:
        """Run until cancelled; on the way out, every queued event reaches the record."""
        session, runner = await self._start()
        recorder_sub = self.bus.subscribe("recorder", maxsize=self.config.records.buffer_readings)
        recording = asyncio.create_task(self.recorder.run(recorder_sub), name="sessiond.recorder")
        recording.add_done_callback(self._recorder_ended)
        # libvlc loads in the background: a missing or stuck one never delays monitoring.
        music = None
        if self.music is not None:
            music = asyncio.create_task(self.music.start(), name="sessiond.music")
            music.add_done_callback(self._music_started)
        room = asyncio.create_task(
            self.room.run(self.bus.subscribe("room", maxsize=256)), name="sessiond.room"
        )
        alarm_audio = asyncio.create_task(
            self.alarm_audio.run(self.bus.subscribe("alarm_audio", maxsize=256)),
            name="sessiond.alarm_audio",
        )
        mqtt = None
        if self.mqtt is not None:
            mqtt = asyncio.create_task(self.mqtt.run(), name="sessiond.mqtt")
        self._resume(session)
        self._check_watched()
        # Silence counts from when the ports are listened to, not from before the record and
        # the console were opened (a demo's sped-up clock makes that start-up long).
        self.monitor.alarms.restart(self.clock.now())
        links = [
            asyncio.create_task(link.run(), name=f"sessiond.link[{name}]")
            for name, link in self.links.items()
        ]
        self._reschedule()
        self._console_ready()
        service = ServiceNotifier()
        try:
            if on_ready is not None:
                on_ready(self)
            service.ready(status=f"room {self.config.room.id}: monitoring")
            # Until cancelled, also with no device configured (a nurses' station).
            await asyncio.gather(*links, asyncio.get_running_loop().create_future())
        finally:
            service.stopping()
            service.close()
            # Monitoring stops first: links closing on purpose are not a device lost.
            self._stopping = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._unwatched_timer is not None:
                self._unwatched_timer.cancel()
            for nibp_link in self.nibp.values():
                await nibp_link.close()
            for task in links:
                task.cancel()
            await asyncio.gather(*links, return_exceptions=True)
            await runner.cleanup()
            self.bus.close()
            await asyncio.gather(room, alarm_audio, return_exceptions=True)
            await self._close_room(mqtt, music)
            await asyncio.gather(recording, return_exceptions=True)
            self.reader.close()
            await self.recorder.close()
            if self._capture is not None:
                self._capture.close()

    async def _close_room(
        self, mqtt: asyncio.Task[None] | None, music: asyncio.Task[None] | None
    ) -> None:
        """The optional parts, once the bus is closed: MQTT says goodbye, lights, music."""
        if mqtt is not None:
            # The bus is closed: the bridge sends what is queued, then `offline`.
            try:
                async with asyncio.timeout(5):
                    await mqtt
            except TimeoutError:
                logger.warning("mqtt: no clean goodbye within 5 s")
            except Exception:
                logger.exception("mqtt: bridge failed")
        await self.lights.aclose()
        if music is not None:
            await asyncio.gather(music, return_exceptions=True)
        if self.music is not None:
            await self.music.close()


def _with_device_timeouts(config: Config, clock: LoopClock) -> Config:
    """`config` with the oximeter's `device_lost` delays at least the clock's shortest real
    device timeout (`LoopClock.device_timeout`): the same at real time and low speeds."""
    lost = config.alarms.device_lost
    medium = clock.device_timeout(lost.medium_after_s)
    if medium == lost.medium_after_s:
        return config
    # The high level keeps its distance from the medium one (25 s by default).
    high = lost.high_after_s + medium - lost.medium_after_s
    # A sped-up clock's stretch, not a setting: it may pass the bound a config file is held to
    # (120 s), so the copy is made without the file's checks.
    lost = copy.copy(lost)
    object.__setattr__(lost, "medium_after_s", medium)
    object.__setattr__(lost, "high_after_s", high)
    alarms = replace(config.alarms, device_lost=lost)
    return config.model_copy(update={"alarms": alarms})


def _open_capture(path: Path | None, config: Config) -> CaptureWriter | None:
    if path is None:
        return None
    return CaptureWriter(path, {name: dev.decoder for name, dev in config.devices.items()})


async def run_daemon(config: Config, *, capture: Path | None = None) -> int:
    """`sessiond run`: the daemon on the configured serial devices, in real time."""
    clock = LoopClock()
    daemon = Daemon(
        config=config,
        clock=clock,
        device_paths={name: dev.path for name, dev in config.devices.items()},
        capture=_open_capture(capture, config),
    )

    def ready(daemon: Daemon) -> None:
        # Said once running: a start-up failure is then the only line printed.
        if not config.console.users:
            logger.warning("no [console.users]: the console is read-only until one is configured")
        _announce(daemon)

    await daemon.run(on_ready=ready)
    return 0


async def run_demo(config: Config, *, speed: float, port: int | None) -> int:
    """`sessiond demo`: the simulator on pseudo-terminals and the daemon reading them; the
    simulated patient follows the session (`sessiond.sim.demo`)."""
    from sessiond.sim.demo import BUS_EVENTS, DemoDirector
    from sessiond.sim.devices import WRITE_GAP_REAL_S
    from sessiond.sim.scenario import builtin_scenario, load_scenario
    from sessiond.sim.simulator import Simulator

    check_demo_speed(speed)
    if port is not None:
        config = config.model_copy(update={"console": config.console.model_copy(
            update={"port": port})})  # fmt: skip
    scenario = (
        load_scenario(config.sim.scenario) if config.sim.scenario else builtin_scenario("demo")
    )
    clock = LoopClock(speed=speed)
    users = config.console.users or {
        DEMO_USER: ConsoleUser(password_hash=hash_password(DEMO_PASSWORD))
    }
    devices = {name: dev.decoder for name, dev in config.devices.items()}
    simulator = Simulator(
        scenario=scenario, clock=clock, devices=devices, write_gap_real_s=WRITE_GAP_REAL_S
    )
    with simulator:
        director = DemoDirector(scenario=scenario, simulator=simulator, clock=clock)
        paths = {name: simulator.ports[name].path for name in config.devices}
        daemon = Daemon(config=config, clock=clock, device_paths=paths, users=users)
        # The patient follows what the nurses do: the dose, acknowledgements, the session's end.
        session_events = daemon.bus.subscribe("demo", maxsize=256, kinds=BUS_EVENTS)
        tasks: list[asyncio.Task[None]] = []

        def ready(daemon: Daemon) -> None:
            _announce(daemon)
            _say_demo_timing(daemon, director, configured=config)
            # Once the daemon has resumed an open session, the clock is where it stays.
            tasks.append(asyncio.create_task(director.run(session_events), name="sessiond.demo"))

        async def both() -> None:
            tasks.append(asyncio.create_task(simulator.run(forever=True), name="sessiond.sim"))
            try:
                await daemon.run(on_ready=ready)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

        if not config.console.users:
            print(f"demo sign-in: {DEMO_USER} / {DEMO_PASSWORD}", flush=True)
        await both()
    return 0


def check_demo_speed(speed: float) -> None:
    """Refuse a speed the demo cannot hold (`MAX_DEMO_SPEED`), naming the limit."""
    if speed > MAX_DEMO_SPEED:
        msg = (
            f"sessiond demo: --speed {speed:g} is more than the demo can hold (at most"
            f" {MAX_DEMO_SPEED:g}: faster, the simulated devices' data outruns the daemon and"
            " its alarms come late)"
        )
        raise ConfigError([msg])


def _say_demo_timing(daemon: Daemon, director: DemoDirector, *, configured: Config) -> None:
    """What the newcomer should know about the demo's clock, once, on stdout."""
    clock = daemon.clock
    if director.follows_dose:
        print("demo: the patient is calm until a session is started and the dose marked;"
              " the scenario's events then follow the dose", flush=True)  # fmt: skip
    lost = daemon.config.alarms.device_lost.medium_after_s
    if lost != configured.alarms.device_lost.medium_after_s:
        print(f"demo: at {clock.speed:g}x device timeouts are at least"
              f" {DEVICE_TIMEOUT_MIN_REAL_S:g} s of real time (device_lost after {lost:g} s"
              " of session time)", flush=True)  # fmt: skip


def _announce(daemon: Daemon) -> None:
    host = daemon.config.console.host
    scheme = "https" if daemon.config.console.tls_cert else "http"
    print(f"console: {scheme}://{host}:{daemon.console_port}/", flush=True)
    for name, link in daemon.links.items():
        print(f"device {name}: {link.path} ({link.decoder.protocol})", flush=True)
    sys.stdout.flush()
