"""The room's set and setting: which scene the lights and music should be in, and why.

A scene per phase (DESIGN §8): light level, colour temperature, fade, playlist and volume.
On top of it, in order of precedence:
1. the alarm override: while an alarm of an overriding priority (high by default) is shown
   and not acknowledged, clinical light within about a second and the music ducked;
2. a nurse's manual scene or volume, until the next phase unless pinned;
3. the phase's own scene.

`RoomController` reads its own bus subscription, so nothing here can hold up monitoring;
music calls go through a queue of their own, so a stuck libvlc never delays the lights.
Every change is published as a `RoomChanged` event (recorded, shown, on MQTT).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sessiond.model import (
    AlarmTransition,
    NurseAction,
    Phase,
    PhaseChanged,
    Priority,
    RoomChanged,
    SessionStarted,
)
from sessiond.room.lights import LightTarget
from sessiond.room.settings import IDLE

# `[scenes]` is defined in `sessiond.room.settings`; importing it from here still works.
from sessiond.room.settings import ScenesConfig as ScenesConfig  # noqa: PLC0414
from sessiond.session.commands import CommandRejected
from sessiond.status import RoomStatus

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from sessiond.bus import Subscription
    from sessiond.model import Event
    from sessiond.room.lights import LightDriver
    from sessiond.room.music import MusicPlayer

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _Manual:
    value: str | int
    pinned: bool


class RoomController:
    """Keeps the lights and music in the scene the session and the nurses call for."""

    def __init__(
        self,
        *,
        config: ScenesConfig,
        lights: LightDriver,
        music: MusicPlayer | None,
        now: Callable[[], float],
        publish: Callable[[Event], None],
        room_id: str = "room",
    ) -> None:
        self.config = config
        self.lights = lights
        self.music = music
        self._now = now
        self._publish = publish
        self.status = RoomStatus(room_id)
        self._scene: _Manual | None = None
        self._volume: _Manual | None = None
        self._last: RoomChanged | None = None
        self._music_jobs: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue()
        self._music_task: asyncio.Task[None] | None = None

    # What the room should be -----------------------------------------------------------

    @property
    def phase_scene(self) -> str:
        phase = self.status.phase
        if phase is None or phase is Phase.ENDED:
            return IDLE
        return phase.value

    def alarm_override(self) -> AlarmTransition | None:
        """The alarm holding clinical light, if any (shown, not acknowledged)."""
        override = self.config.alarm
        if not override.enabled:
            return None
        wanted = {Priority.from_label(p) for p in override.priorities}
        for alarm in self.status.alarms.values():
            if alarm.priority in wanted and alarm.alarm_id not in self.status.acknowledged:
                return alarm
        return None

    def desired(self, source: str) -> RoomChanged:
        name = str(self._scene.value) if self._scene is not None else self.phase_scene
        scene = self.config.scene(name) or self.config.scene(self.phase_scene)
        assert scene is not None
        volume = int(self._volume.value) if self._volume is not None else scene.volume_pct
        manual = self._scene is not None or self._volume is not None
        pinned = any(m is not None and m.pinned for m in (self._scene, self._volume))
        alarm = self.alarm_override()
        if alarm is not None:
            a = self.config.alarm
            return RoomChanged(t=self._now(), scene=name, light_pct=a.light_pct,
                               colour_temp_k=a.colour_temp_k, playlist=scene.playlist,
                               volume_pct=volume, ducked=a.duck_music, override="alarm",
                               pinned=pinned, source=f"alarm {alarm.alarm_id}")  # fmt: skip
        return RoomChanged(t=self._now(), scene=name, light_pct=scene.light_pct,
                           colour_temp_k=scene.colour_temp_k, playlist=scene.playlist,
                           volume_pct=volume, ducked=False,
                           override="manual" if manual else None, pinned=pinned,
                           source=source)  # fmt: skip

    # Inputs -------------------------------------------------------------------------------

    async def run(self, sub: Subscription) -> None:
        """Follow the bus until it closes."""
        self._music_task = asyncio.create_task(self._play_music(), name="sessiond.room.music")
        await self.apply("start")
        try:
            async for event in sub:
                source = self._fold(event)
                if source is not None:
                    await self.apply(source)
        finally:
            self._music_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._music_task

    def _fold(self, event: Event) -> str | None:
        """Fold `event` into the room's view; the reason to re-apply, if it matters."""
        if isinstance(event, RoomChanged):
            return None
        before = self.alarm_override()
        self.status.apply(event)
        match event:
            case PhaseChanged():
                # A manual change lasts until the next phase unless pinned.
                if self._scene is not None and not self._scene.pinned:
                    self._scene = None
                if self._volume is not None and not self._volume.pinned:
                    self._volume = None
                return f"phase {event.phase.value}"
            case SessionStarted():
                self._scene = self._volume = None
                return "session start"
            case AlarmTransition() | NurseAction():
                after = self.alarm_override()
                if (before is None) != (after is None):
                    return "alarm" if after is not None else "alarm released"
        return None

    async def set_scene(self, *, scene: str | None, pinned: bool, source: str) -> RoomChanged:
        """A nurse's scene (None: back to the phase's own); raises `CommandRejected`."""
        if scene is not None and self.config.scene(scene) is None:
            known = ", ".join(self.config.names())
            msg = f"unknown scene {scene!r} (known: {known})"
            raise CommandRejected(msg)
        self._scene = None if scene is None else _Manual(scene, pinned)
        return await self.apply(source)

    async def set_volume(self, *, volume_pct: int, pinned: bool, source: str) -> RoomChanged:
        if not 0 <= volume_pct <= 100:  # noqa: PLR2004 - a percentage
            msg = f"volume must be 0-100 %, not {volume_pct}"
            raise CommandRejected(msg)
        self._volume = _Manual(volume_pct, pinned)
        return await self.apply(source)

    # Outputs ------------------------------------------------------------------------------

    async def apply(self, source: str) -> RoomChanged:
        """Drive the lights and music to what the room should be now; publish a change."""
        want = self.desired(source)
        last = self._last
        # The same room, whenever and for whatever reason it was asked for: nothing to do.
        if last is not None and dataclasses.replace(last, t=want.t, source=want.source) == want:
            return last
        self._last = want
        entering = want.override == "alarm" and (last is None or last.override != "alarm")
        leaving = want.override != "alarm" and last is not None and last.override == "alarm"
        if entering:
            fade = self.config.alarm.fade_s
        elif leaving:
            fade = self.config.alarm.release_fade_s
        else:
            scene = self.config.scene(want.scene)
            fade = 0.0 if scene is None or last is None else scene.fade_s
        # Lights first: they are what the nurse needs within a second.
        try:
            await self.lights.set(LightTarget(want.light_pct, want.colour_temp_k, fade))
        except Exception:
            logger.exception("room: the lights could not be set")
        self._queue_music(last, want)
        self._publish(want)
        logger.info(
            "room: %s%s, light %.0f %% %d K, music %s %d %%%s (%s)",
            want.scene, f" [{want.override}]" if want.override else "", want.light_pct,
            want.colour_temp_k, want.playlist or "off", want.volume_pct,
            " ducked" if want.ducked else "", source,
        )  # fmt: skip
        return want

    def _queue_music(self, last: RoomChanged | None, want: RoomChanged) -> None:
        music = self.music
        if music is None:
            return
        if want.ducked and (last is None or not last.ducked):
            self._music_jobs.put_nowait(music.duck)
        if last is None or last.playlist != want.playlist:
            playlist, volume = want.playlist, want.volume_pct
            if playlist:
                self._music_jobs.put_nowait(lambda: music.play(playlist, volume))
            else:
                self._music_jobs.put_nowait(music.stop)
        elif last.volume_pct != want.volume_pct:
            volume = want.volume_pct
            self._music_jobs.put_nowait(lambda: music.set_volume(volume))
        if not want.ducked and last is not None and last.ducked:
            self._music_jobs.put_nowait(music.restore)

    async def _play_music(self) -> None:
        while True:
            job = await self._music_jobs.get()
            try:
                await job()
            except Exception:
                # A missing playlist or a stuck libvlc: the room goes on without music.
                logger.exception("room: music")
            finally:
                self._music_jobs.task_done()

    async def drain_music(self) -> None:
        """Wait until every queued music call has run (tests, shutdown)."""
        await self._music_jobs.join()
