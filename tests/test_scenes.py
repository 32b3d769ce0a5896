"""The room controller: phase scenes, the alarm override and its release, manual overrides."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from sessiond.bus import Bus
from sessiond.model import (
    AlarmState,
    AlarmTransition,
    NurseAction,
    Phase,
    PhaseChanged,
    Priority,
    RoomChanged,
    Route,
    SessionStarted,
)
from sessiond.room.lights import LightDriver, LightsConfig, Zigbee2MqttLight
from sessiond.room.music import MusicConfig, MusicPlayer
from sessiond.room.scenes import RoomController, ScenesConfig
from sessiond.session.commands import CommandRejected
from tests.music_library import short_playlists

HEADLESS = ("--aout=alsa", "--alsa-audio-device=null", "--no-video", "--quiet")


class Recorder:
    """The lights' MQTT side and the bus's other end, for looking at what was sent."""

    def __init__(self) -> None:
        self.lights: list[dict[str, Any]] = []
        self.rooms: list[RoomChanged] = []
        self.changed = asyncio.Event()

    def publish(self, topic: str, payload: str | bytes, *, qos: int, retain: bool) -> None:
        assert topic == "zigbee2mqtt/room/set"
        self.lights.append(json.loads(payload))

    def room(self, event: object) -> None:
        assert isinstance(event, RoomChanged)
        self.rooms.append(event)
        self.changed.set()

    async def next_room(self) -> RoomChanged:
        await asyncio.wait_for(self.changed.wait(), 5)
        self.changed.clear()
        return self.rooms[-1]


class MusicCalls:
    """Records the controller's music calls (the real player has its own tests)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def play(self, playlist: str, volume_pct: int, crossfade_s: float | None = None) -> None:
        self.calls.append(("play", playlist, volume_pct))

    async def set_volume(self, volume_pct: int, ramp_s: float | None = None) -> None:
        self.calls.append(("volume", volume_pct))

    async def duck(self, level_pct: int | None = None, ramp_s: float | None = None) -> None:
        self.calls.append(("duck",))

    async def restore(self, ramp_s: float | None = None) -> None:
        self.calls.append(("restore",))

    async def stop(self, fade_s: float | None = None) -> None:
        self.calls.append(("stop",))


def lights(rec: Recorder) -> LightDriver:
    config = LightsConfig(fixtures=[Zigbee2MqttLight(adapter="zigbee2mqtt", name="room")])
    return LightDriver(config, publish=rec.publish)


async def started(rec: Recorder, music: Any) -> tuple[Bus, RoomController, asyncio.Task[None]]:
    bus = Bus()
    controller = RoomController(
        config=ScenesConfig(), lights=lights(rec), music=music, now=lambda: 1.0,
        publish=rec.room,
    )  # fmt: skip
    task = asyncio.create_task(controller.run(bus.subscribe("room")))
    first = await rec.next_room()
    assert (first.scene, first.source) == ("idle", "start")
    return bus, controller, task


async def stop(bus: Bus, task: asyncio.Task[None]) -> None:
    bus.close()
    await asyncio.wait_for(task, 5)


def high(alarm_id: str = "spo2_low", state: AlarmState = AlarmState.ACTIVE) -> AlarmTransition:
    return AlarmTransition(t=5.0, alarm_id=alarm_id, priority=Priority.HIGH, state=state)


async def test_each_phase_has_its_scene():
    rec, music = Recorder(), MusicCalls()
    bus, controller, task = await started(rec, music)
    bus.publish(SessionStarted(t=0.0, session_id="s", route=Route.IV, user="ana"))
    bus.publish(PhaseChanged(t=0.0, phase=Phase.BASELINE))
    room = await rec.next_room()
    assert (room.scene, room.light_pct, room.colour_temp_k, room.playlist) == (
        "baseline", 45, 2700, "baseline")  # fmt: skip
    bus.publish(PhaseChanged(t=600.0, phase=Phase.ONSET))
    room = await rec.next_room()
    assert (room.scene, room.light_pct, room.playlist) == ("onset", 25, "onset")
    assert room.volume_pct == 30
    # The lights fade over the scene's 300 s: the first step goes out at once, stepped.
    assert rec.lights[-1]["state"] == "ON"
    assert rec.lights[-1]["transition"] <= 20
    await controller.drain_music()
    assert ("play", "baseline", 35) in music.calls
    assert music.calls[-1] == ("play", "onset", 30)
    await stop(bus, task)


async def test_a_high_alarm_takes_the_room_until_acknowledged():
    rec, music = Recorder(), MusicCalls()
    bus, controller, task = await started(rec, music)
    bus.publish(PhaseChanged(t=0.0, phase=Phase.EFFECT))
    await rec.next_room()
    bus.publish(high())
    room = await rec.next_room()
    assert (room.override, room.light_pct, room.colour_temp_k, room.ducked) == (
        "alarm", 100, 4000, True)  # fmt: skip
    # Clinical light within about a second: one native transition, no stepping.
    assert rec.lights[-1] == {"state": "ON", "brightness": 254, "color_temp": 250,
                              "transition": 0.5}  # fmt: skip
    await controller.drain_music()
    assert music.calls[-1] == ("duck",)
    bus.publish(high(state=AlarmState.LATCHED))  # condition gone, still shown: holds
    bus.publish(NurseAction(t=9.0, action="ack", user="ana", source="console",
                            detail={"alarm_id": "spo2_low"}))  # fmt: skip
    room = await rec.next_room()
    assert (room.override, room.scene, room.light_pct, room.ducked) == (None, "effect", 15, False)
    await controller.drain_music()
    assert music.calls[-1] == ("restore",)
    await stop(bus, task)


async def test_medium_alarms_leave_the_room_alone_and_a_cleared_high_releases_it():
    rec, music = Recorder(), MusicCalls()
    bus, _controller, task = await started(rec, music)
    bus.publish(AlarmTransition(t=1.0, alarm_id="pr_high", priority=Priority.MEDIUM,
                                state=AlarmState.ACTIVE))  # fmt: skip
    bus.publish(high("bp_high"))
    room = await rec.next_room()
    assert room.source == "alarm bp_high"
    bus.publish(AlarmTransition(t=9.0, alarm_id="bp_high", priority=Priority.HIGH,
                                state=AlarmState.CLEARED))  # fmt: skip
    room = await rec.next_room()
    assert room.override is None
    assert len(rec.rooms) == 3  # the medium alarm changed nothing
    await stop(bus, task)


async def test_manual_scene_lasts_until_the_next_phase_unless_pinned():
    rec, music = Recorder(), MusicCalls()
    bus, controller, task = await started(rec, music)
    bus.publish(PhaseChanged(t=0.0, phase=Phase.ONSET))
    await rec.next_room()
    room = await controller.set_scene(scene="recovery", pinned=False, source="console ana")
    assert (room.scene, room.override, room.light_pct) == ("recovery", "manual", 50)
    bus.publish(PhaseChanged(t=1800.0, phase=Phase.EFFECT))
    room = await rec.next_room()
    assert (room.scene, room.override) == ("effect", None)
    await controller.set_volume(volume_pct=10, pinned=True, source="console ana")
    bus.publish(PhaseChanged(t=9000.0, phase=Phase.RECOVERY))
    room = await rec.next_room()
    assert (room.scene, room.volume_pct, room.pinned) == ("recovery", 10, True)
    room = await controller.set_scene(scene=None, pinned=False, source="console ana")
    assert room.volume_pct == 10  # the pinned volume stays
    await stop(bus, task)


async def test_bad_manual_changes_are_refused_and_change_nothing():
    rec, music = Recorder(), MusicCalls()
    bus, controller, task = await started(rec, music)
    before = len(rec.rooms)
    with pytest.raises(CommandRejected, match="unknown scene 'disco'"):
        await controller.set_scene(scene="disco", pinned=False, source="mqtt")
    with pytest.raises(CommandRejected, match="0-100"):
        await controller.set_volume(volume_pct=101, pinned=False, source="mqtt")
    assert len(rec.rooms) == before
    await stop(bus, task)


async def test_the_alarm_ducks_real_music(tmp_path):
    """Through libvlc: a high alarm ducks the playing phase music, the release restores it."""
    rec = Recorder()
    player = MusicPlayer(MusicConfig(vlc_args=HEADLESS, duck_ramp_s=0.2, restore_ramp_s=0.2,
                                     playlists_dir=str(short_playlists(tmp_path / "playlists")),
                                     generate_ambient=False,
                                     crossfade_s=0.2, ramp_s=0.2))  # fmt: skip
    await player.start()
    assert player.available, player.reason
    bus, controller, task = await started(rec, player)
    try:
        bus.publish(PhaseChanged(t=0.0, phase=Phase.BASELINE))
        await rec.next_room()
        await controller.drain_music()
        await _until(lambda: player.status().output_volume_pct == 35)
        assert player.status().playlist == "baseline"
        bus.publish(high())
        await rec.next_room()
        await controller.drain_music()
        await _until(lambda: player.status().output_volume_pct == 25)
        bus.publish(AlarmTransition(t=9.0, alarm_id="spo2_low", priority=Priority.HIGH,
                                    state=AlarmState.CLEARED))  # fmt: skip
        await rec.next_room()
        await controller.drain_music()
        await _until(lambda: player.status().output_volume_pct == 35)
    finally:
        await stop(bus, task)
        await player.close()


async def _until(predicate: Any, within: float = 10.0) -> None:
    """Poll the player: libvlc has no event for a volume reached."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - a libvlc state, not something to await
            await asyncio.sleep(0.02)
