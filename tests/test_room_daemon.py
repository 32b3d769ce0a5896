"""The whole room: the daemon on the simulator, a real Mosquitto, Zigbee2MQTT lights, libvlc.

The session's phases set the scene; a high alarm turns the room to clinical light and ducks
the music until it is acknowledged; MQTT carries the retained state and takes commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Any

from sessiond.app import Daemon
from sessiond.clock import LoopClock
from sessiond.config import Config, parse_config
from sessiond.model import DeviceStatus, Route
from sessiond.sim.scenario import Desaturation, Patient, Scenario
from sessiond.sim.simulator import Simulator
from tests.mosquitto import Mosquitto, listen
from tests.music_library import short_playlists

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from tests.mosquitto import Listener, Received

SPEED = 20.0
LIGHT = "zigbee2mqtt/therapy_room/set"
HEADLESS = ["--aout=alsa", "--alsa-audio-device=null", "--no-video", "--quiet"]


def room_config(tmp_path: Path, port: int) -> Config:
    return parse_config(
        {
            "room": {"id": "room-7"},
            "mqtt": {"enabled": True, "port": port, "discovery": False},
            "console": {"port": 0},
            "records": {"path": str(tmp_path / "record.sqlite")},
            "lights": {"fixtures": [{"adapter": "zigbee2mqtt", "name": "therapy_room"}]},
            "music": {
                "vlc_args": HEADLESS,
                "crossfade_s": 1,
                "duck_ramp_s": 0.5,
                "playlists_dir": str(short_playlists(tmp_path / "playlists")),
                "generate_ambient": False,
            },
            "devices": {"spo2": {"decoder": "masimo-ascii1"}},
            # No console watches these sessions: that alarm is tested on its own.
            "alarm_audio": {"unwatched_after_s": 60, "vlc_args": HEADLESS},
        },
        source="test",
    )


@contextlib.asynccontextmanager
async def running_room(tmp_path: Path, port: int) -> AsyncIterator[Daemon]:
    # Calm, then SpO2 down to 80 % (high at once) from session second 120.
    scenario = Scenario(
        name="room", seed=5, duration_s=3600, patient=Patient(spo2=97.5),
        events=(Desaturation(kind="desaturation", at_s=120, duration_s=600, spo2=80, ramp_s=5),),
    )  # fmt: skip
    config = room_config(tmp_path, port)
    clock = LoopClock(speed=SPEED)
    with Simulator(scenario=scenario, clock=clock, devices={"spo2": "masimo-ascii1"}) as sim:
        daemon = Daemon(config=config, clock=clock,
                        device_paths={"spo2": sim.ports["spo2"].path})  # fmt: skip
        ready = asyncio.Event()
        tasks = [
            asyncio.create_task(sim.run()),
            asyncio.create_task(daemon.run(on_ready=lambda _d: ready.set())),
        ]
        try:
            await asyncio.wait_for(ready.wait(), 10)
            yield daemon
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def light(m: Received) -> dict[str, Any]:
    data: dict[str, Any] = m.json()
    return data


def scene(state: dict[str, Any]) -> tuple[str | None, str | None]:
    """The state's scene name and override."""
    room = state.get("scene") or {}
    return room.get("name"), room.get("override")


def is_clinical(m: Received) -> bool:
    return light(m).get("brightness") == 254 and light(m).get("color_temp") == 250


async def retained_state(listener: Listener, match: Any, *, after: int) -> dict[str, Any]:
    m = await listener.wait_for(
        "sessiond/room-7/state", lambda m: match(m.json()), after=after, within_s=10
    )
    state: dict[str, Any] = m.json()
    return state


async def retained(port: int, topic: str) -> Received:
    """What a client connecting now is given on `topic` (retained messages only)."""
    async with listen(port, topic) as late:
        m = await late.wait_for(topic, within_s=5)
    assert m.retain
    return m


async def test_phases_set_the_scene_and_a_high_alarm_takes_the_room(tmp_path: Path) -> None:
    (tmp_path / "broker").mkdir()
    with Mosquitto(tmp_path / "broker") as broker:
        assert broker.port is not None
        async with (
            listen(broker.port, "zigbee2mqtt/#", "sessiond/room-7/#") as mqtt,
            running_room(tmp_path, broker.port) as daemon,
        ):
            online = await mqtt.wait_for("sessiond/room-7/availability", within_s=10)
            assert online.payload == b"online"
            # No session: the idle scene, 60 % at 3000 K (333 mireds).
            idle = await mqtt.wait_for(LIGHT, within_s=10)
            assert light(idle)["brightness"] == round(0.60 * 254)

            mark = mqtt.mark()
            await daemon.start_session(route=Route.IV, user="ana", source="test")
            baseline = await mqtt.wait_for(LIGHT, after=mark, within_s=10)
            # Warm and soft: the baseline scene starts fading towards 45 % at 2700 K.
            assert light(baseline)["state"] == "ON"
            state = await retained_state(mqtt, lambda s: scene(s) == ("baseline", None), after=mark)
            assert state["phase"] == "baseline"
            assert state["session"]["route"] == "iv"
            assert state["devices"]["music"] == {"connected": True, "detail": "playing"}
            assert state["music"]["playlist"] == "baseline"
            music = daemon.music
            assert music is not None
            assert music.status().playlist == "baseline"

            # The desaturation at session second 120: spo2_low high, clinical light.
            clinical = await mqtt.wait_for(LIGHT, is_clinical, after=mark, within_s=30)
            assert light(clinical)["transition"] <= 0.5
            alarm = await mqtt.wait_for(
                "sessiond/room-7/alarm", lambda m: bool(m.json()), after=mark, within_s=10
            )
            assert [a["id"] for a in alarm.json()] == ["spo2_low"]
            kept = await retained(broker.port, "sessiond/room-7/alarm")
            assert [a["id"] for a in kept.json()] == ["spo2_low"]
            event = await mqtt.wait_for(
                "sessiond/room-7/event",
                lambda m: m.json().get("id") == "spo2_low",
                after=mark,
            )
            assert event.json()["priority"] in ("medium", "high")
            await _until(lambda: music.status().ducked)

            overridden = await retained_state(
                mqtt, lambda s: scene(s) == ("baseline", "alarm"), after=mark
            )
            assert overridden["scene"]["light_pct"] == 100
            # The nurse acknowledges over MQTT: the room goes back to its scene.
            mark = mqtt.mark()
            async with listen(broker.port, "sessiond/room-7/event") as commands:
                await commands.client.publish(
                    "sessiond/room-7/cmd/ack",
                    json.dumps({"alarm": "spo2_low", "user": "bo"}),
                    qos=1,
                )
                ack = await commands.wait_for(
                    "sessiond/room-7/event",
                    lambda m: m.json().get("action") == "ack",
                    within_s=10,
                )
                assert ack.json()["user"] == "bo"
                assert ack.json()["source"] == "mqtt"
            released = await mqtt.wait_for(
                LIGHT, lambda m: not is_clinical(m), after=mark, within_s=10
            )
            assert light(released)["brightness"] < 254
            await _until(lambda: not music.status().ducked)
            state = await retained_state(mqtt, lambda s: scene(s) == ("baseline", None), after=mark)
            # Still low, so still shown: acknowledged, the room is the nurse's again.
            assert [(a["id"], a["priority"]) for a in state["alarms"]] == [("spo2_low", "high")]
            kept = await retained(broker.port, "sessiond/room-7/availability")
            assert kept.payload == b"online"


async def _until(predicate: Any, within: float = 10.0) -> None:
    """Poll the player: libvlc has no event for a duck reached."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - player state, not something to await
            await asyncio.sleep(0.02)


async def test_without_libvlc_the_daemon_runs_and_says_music_is_unavailable(tmp_path: Path) -> None:
    config = parse_config(
        {
            "console": {"port": 0},
            "records": {"path": str(tmp_path / "record.sqlite")},
            # An option libvlc does not know makes it refuse to start, as a missing one does.
            "music": {"vlc_args": ["--no-such-option"], "generate_ambient": False},
            "devices": {},
        },
        source="test",
    )
    daemon = Daemon(config=config, clock=LoopClock(), device_paths={})
    devices = daemon.bus.subscribe("test")
    task = asyncio.create_task(daemon.run())
    try:
        music: DeviceStatus | None = None
        async with asyncio.timeout(10):
            async for event in devices:
                if isinstance(event, DeviceStatus) and event.device == "music":
                    music = event
                    break
        assert music is not None
        assert not music.connected
        assert "music unavailable" in music.detail or "libvlc" in music.detail
        # Monitoring goes on: a session starts and has its phase.
        await daemon.start_session(route=Route.IV, user="ana", source="test")
        assert daemon.monitor.phase is not None
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
