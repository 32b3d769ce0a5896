"""Light adapters (payloads per ecosystem), fade stepping, cancellation and availability."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any, cast

import pytest
from pydantic import ValidationError

from sessiond.bus import Bus
from sessiond.room.lights import (
    HomeAssistantAdapter,
    HomeAssistantLight,
    LightCommand,
    LightDriver,
    LightPoint,
    LightsConfig,
    LightTarget,
    TasmotaAdapter,
    TasmotaLight,
    Zigbee2MqttAdapter,
    Zigbee2MqttLight,
    plan_fade,
)
from sessiond.room.mqtt import MqttBridge, MqttSettings
from sessiond.session.commands import Control
from sessiond.status import RoomStatus
from tests import mosquitto
from tests.mosquitto import Mosquitto, listen

OVERRIDE = LightTarget(level_pct=100, colour_temp_k=4000, transition_s=0.5)


class Recorder:
    """A `Publish` that keeps every message."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, int, bool]] = []

    def __call__(self, topic: str, payload: str | bytes, *, qos: int, retain: bool) -> None:
        text = payload.decode() if isinstance(payload, bytes) else payload
        self.sent.append((topic, text, qos, retain))

    def payloads(self) -> list[Any]:
        return [json.loads(p) for _, p, _, _ in self.sent]


class ManualClock:
    """Session time that moves only when the test says; sleepers wake as it passes them."""

    def __init__(self) -> None:
        self.t = 0.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.t + seconds, fut))
        await fut

    async def advance(self, seconds: float) -> None:
        self.t += seconds
        due = [(at, f) for at, f in self._sleepers if at <= self.t + 1e-9]
        self._sleepers = [(at, f) for at, f in self._sleepers if at > self.t + 1e-9]
        for _, fut in due:
            if not fut.done():
                fut.set_result(None)
        # Let each woken fade send its step and go back to sleep.
        for _ in range(3):
            await asyncio.sleep(0)


def z2m(**kw: Any) -> Zigbee2MqttLight:
    return Zigbee2MqttLight(adapter="zigbee2mqtt", name=kw.pop("name", "therapy1/ceiling"), **kw)


def lights(*fixtures: Any) -> LightsConfig:
    return LightsConfig(fixtures=list(fixtures))


# --- targets and configuration ------------------------------------------------------------------


def test_target_rejects_values_out_of_range():
    """Level 0-100 %, a plausible colour temperature, a non-negative fade."""
    for bad in (
        {"level_pct": 101, "colour_temp_k": 2700},
        {"level_pct": -1, "colour_temp_k": 2700},
        {"level_pct": 50, "colour_temp_k": 500},
        {"level_pct": 50, "colour_temp_k": 2700, "transition_s": -1},
        {"level_pct": 50, "colour_temp_k": 2700, "transition_s": float("nan")},
    ):
        with pytest.raises(ValueError, match="must be"):
            LightTarget(**bad)


def test_lights_config_picks_the_adapter_and_rejects_mistakes():
    """`adapter` selects the model; unknown keys, bad ranges and duplicate names are errors."""
    config = LightsConfig.model_validate(
        {
            "fixtures": [
                {"adapter": "zigbee2mqtt", "name": "room1", "max_mireds": 454},
                {"adapter": "tasmota", "name": "lamp"},
                {"adapter": "homeassistant", "name": "strip", "command_topic": "esp/strip/set"},
            ]
        }
    )
    kinds = [type(f) for f in config.fixtures]
    assert kinds == [Zigbee2MqttLight, TasmotaLight, HomeAssistantLight]
    assert config.fixtures[1].max_native_transition_s == 20.0
    for bad in (
        {"adapter": "zigbee2mqtt", "name": "x", "brightness": 3},
        {"adapter": "hue", "name": "x"},
        {"adapter": "zigbee2mqtt", "name": "x", "min_mireds": 400, "max_mireds": 300},
        {"adapter": "tasmota", "name": "x", "max_native_transition_s": 30},
        {"adapter": "zigbee2mqtt", "name": "x/#"},
        {"adapter": "homeassistant", "name": "x"},
    ):
        with pytest.raises(ValidationError):
            LightsConfig.model_validate({"fixtures": [bad]})
    twice = {"adapter": "tasmota", "name": "lamp"}
    with pytest.raises(ValidationError, match="unique"):
        LightsConfig.model_validate({"fixtures": [twice, twice]})


# --- adapters -----------------------------------------------------------------------------------


def on(level: float, mireds: float, transition: float = 0.0) -> LightCommand:
    return LightCommand(on=True, level_pct=level, mireds=mireds, transition_s=transition)


OFF = LightCommand(on=False, level_pct=0, mireds=370)


def test_zigbee2mqtt_payloads():
    """`<base>/<name>/set`: brightness 0-254, mireds clamped to the device, transition in s."""
    adapter = Zigbee2MqttAdapter(z2m(min_mireds=153, max_mireds=454))
    topic, payload = adapter.command(on(50, 370.4, 2.04))
    assert topic == "zigbee2mqtt/therapy1/ceiling/set"
    assert json.loads(payload) == {
        "state": "ON",
        "brightness": 127,
        "color_temp": 370,
        "transition": 2.0,
    }
    assert json.loads(adapter.command(on(100, 1_000_000 / 2000))[1]) == {
        "state": "ON",
        "brightness": 254,
        "color_temp": 454,  # 2000 K is warmer than the bulb goes
    }
    assert json.loads(adapter.command(on(0.1, 100))[1])["brightness"] == 1
    assert json.loads(adapter.command(on(0.1, 100))[1])["color_temp"] == 153
    assert json.loads(adapter.command(OFF)[1]) == {"state": "OFF"}
    other_base = Zigbee2MqttAdapter(z2m(name="group1", base_topic="z2m"))
    assert other_base.command(OFF)[0] == "z2m/group1/set"


def test_tasmota_payloads():
    """`cmnd/<topic>/Backlog` with CT in 153-500 mireds, Dimmer %, and a fixed-duration fade."""
    adapter = TasmotaAdapter(TasmotaLight(adapter="tasmota", name="lamp1"))
    topic, payload = adapter.command(on(40, 370, 5))
    assert topic == "cmnd/lamp1/Backlog"
    assert payload == "SetOption117 1; Fade 1; Speed 10; CT 370; Dimmer 40"
    assert adapter.command(on(40, 370, 0.2))[1].startswith("SetOption117 1; Fade 1; Speed 1;")
    assert "Speed 40;" in adapter.command(on(40, 370, 60))[1]
    assert adapter.command(on(100, 250))[1] == "Fade 0; CT 250; Dimmer 100"
    assert adapter.command(on(0.2, 800))[1] == "Fade 0; CT 500; Dimmer 1"
    assert adapter.command(on(50, 100))[1] == "Fade 0; CT 153; Dimmer 50"
    assert adapter.command(OFF) == ("cmnd/lamp1/Backlog", "Power OFF")


def test_home_assistant_json_payloads():
    """HA JSON schema: brightness on the light's scale, colour in mireds or kelvin."""
    mireds = HomeAssistantAdapter(
        HomeAssistantLight(adapter="homeassistant", name="strip", command_topic="esp/strip/set")
    )
    topic, payload = mireds.command(on(20, 370, 3))
    assert topic == "esp/strip/set"
    assert json.loads(payload) == {
        "state": "ON",
        "brightness": 51,
        "color_temp": 370,
        "transition": 3.0,
    }
    kelvin = HomeAssistantAdapter(
        HomeAssistantLight(
            adapter="homeassistant",
            name="strip",
            command_topic="esp/strip/set",
            color_temp_kelvin=True,
            brightness_scale=100,
        )
    )
    assert json.loads(kelvin.command(on(20, 250))[1]) == {
        "state": "ON",
        "brightness": 20,
        "color_temp": 4000,
    }
    assert json.loads(kelvin.command(OFF)[1]) == {"state": "OFF"}


def test_availability_parsing_per_adapter():
    """Z2M JSON or plain text (and its bridge), Tasmota LWT, HA's configured payloads."""
    z = Zigbee2MqttAdapter(z2m(name="ceiling"))
    assert z.availability_topics() == [
        "zigbee2mqtt/ceiling/availability",
        "zigbee2mqtt/bridge/state",
    ]
    topic = "zigbee2mqtt/ceiling/availability"
    assert z.parse_availability(topic, b'{"state":"online"}') is True
    assert z.parse_availability(topic, b'{"state":"offline"}') is False
    assert z.parse_availability(topic, b"online") is True
    assert z.parse_availability(topic, b"offline") is False
    assert z.parse_availability(topic, b"{not json") is None
    assert z.parse_availability(topic, b"[1]") is None
    assert z.parse_availability("zigbee2mqtt/other/availability", b"online") is None
    t = TasmotaAdapter(TasmotaLight(adapter="tasmota", name="lamp1"))
    assert t.availability_topics() == ["tele/lamp1/LWT"]
    assert t.parse_availability("tele/lamp1/LWT", b"Online") is True
    assert t.parse_availability("tele/lamp1/LWT", b"Offline") is False
    h = HomeAssistantAdapter(
        HomeAssistantLight(
            adapter="homeassistant",
            name="strip",
            command_topic="esp/strip/set",
            availability_topic="esp/strip/status",
            payload_available="up",
            payload_not_available="down",
        )
    )
    assert h.parse_availability("esp/strip/status", b"up") is True
    assert h.parse_availability("esp/strip/status", b"down") is False
    assert h.parse_availability("esp/strip/status", b"meh") is None
    no_topic = HomeAssistantAdapter(
        HomeAssistantLight(adapter="homeassistant", name="s", command_topic="esp/s/set")
    )
    assert no_topic.availability_topics() == []


def test_driver_tracks_availability_and_the_zigbee_bridge():
    """Availability read back per light; Z2M going down takes its lights with it."""
    changes: list[dict[str, bool | None]] = []
    driver = LightDriver(
        lights(z2m(name="ceiling"), TasmotaLight(adapter="tasmota", name="lamp1")),
        publish=Recorder(),
    )
    driver.on_change = lambda: changes.append(driver.availability())
    assert driver.availability() == {"ceiling": None, "lamp1": None}
    assert set(driver.availability_topics()) == {
        "zigbee2mqtt/ceiling/availability",
        "zigbee2mqtt/bridge/state",
        "tele/lamp1/LWT",
    }
    driver.handle_message("zigbee2mqtt/ceiling/availability", b'{"state":"online"}')
    driver.handle_message("tele/lamp1/LWT", b"Offline")
    driver.handle_message("tele/lamp1/LWT", b"Offline")  # no change, no callback
    driver.handle_message("tele/lamp1/LWT", b"garbage")
    assert driver.availability() == {"ceiling": True, "lamp1": False}
    driver.handle_message("zigbee2mqtt/bridge/state", b'{"state":"offline"}')
    assert driver.availability()["ceiling"] is False
    driver.handle_message("zigbee2mqtt/bridge/state", b"online")
    assert driver.availability()["ceiling"] is True
    assert changes == [
        {"ceiling": True, "lamp1": None},
        {"ceiling": True, "lamp1": False},
        {"ceiling": False, "lamp1": False},
        {"ceiling": True, "lamp1": False},
    ]


# --- fades --------------------------------------------------------------------------------------


def test_plan_fade_short_unknown_and_off():
    """Short fades and unknown starting points are one native command; off ends with OFF."""
    end = LightPoint(40, 370)
    short = plan_fade(LightPoint(10, 300), end, 8, step_s=5, max_native_s=10)
    assert [(s.at_s, s.cmd) for s in short] == [(0.0, on(40, 370, 8))]
    unknown = plan_fade(None, end, 600, step_s=5, max_native_s=10)
    assert [(s.at_s, s.cmd) for s in unknown] == [(0.0, on(40, 370, 10))]
    instant = plan_fade(None, LightPoint(0, 370), 0, step_s=5, max_native_s=10)
    assert [s.cmd.on for s in instant] == [False]
    dark = plan_fade(LightPoint(0, 370), LightPoint(0, 370), 30, step_s=5, max_native_s=10)
    assert [(s.cmd.on, s.cmd.transition_s) for s in dark] == [(False, 0.0)]
    unknown_off = plan_fade(None, LightPoint(0, 370), 30, step_s=5, max_native_s=10)
    assert [(s.cmd.on, s.cmd.transition_s) for s in unknown_off] == [(False, 10)]
    fade_out = plan_fade(LightPoint(40, 370), LightPoint(0, 370), 4, step_s=5, max_native_s=10)
    assert [(s.at_s, s.cmd.on, s.cmd.transition_s) for s in fade_out] == [
        (0.0, True, 4),
        (4, False, 0.0),
    ]


def test_plan_fade_steps_long_fades_linearly_in_mireds():
    """A 60 s fade with 5 s steps: 12 commands, each 5 s native, level and mireds linear."""
    steps = plan_fade(LightPoint(50, 300), LightPoint(10, 450), 60, step_s=5, max_native_s=20)
    assert [s.at_s for s in steps] == [5.0 * k for k in range(12)]
    assert all(s.cmd.transition_s == pytest.approx(5) for s in steps)
    assert steps[0].cmd.level_pct == pytest.approx(50 - 40 / 12)
    assert steps[5].cmd.mireds == pytest.approx(300 + 150 * 6 / 12)
    assert (steps[-1].cmd.level_pct, steps[-1].cmd.mireds) == (10, 450)
    # A light that cannot fade by itself gets 0 s steps: the daemon's steps are the fade.
    stepped = plan_fade(LightPoint(50, 300), LightPoint(10, 450), 3, step_s=1, max_native_s=0)
    assert [s.cmd.transition_s for s in stepped] == [0, 0, 0]


async def test_driver_steps_a_long_fade_on_the_clock():
    """The first step goes out at once, the next ones every `step_s` of the clock."""
    clock = ManualClock()
    sent = Recorder()
    driver = LightDriver(
        lights(z2m(step_s=5, max_native_transition_s=20)), publish=sent, clock=clock
    )
    await driver.set(LightTarget(level_pct=50, colour_temp_k=3333, transition_s=0))
    assert sent.payloads() == [{"state": "ON", "brightness": 127, "color_temp": 300}]
    await driver.set(LightTarget(level_pct=10, colour_temp_k=2222, transition_s=60))
    assert len(sent.sent) == 2
    for _ in range(11):
        await clock.advance(5)
    await driver.wait_idle()
    steps = sent.payloads()[1:]
    assert len(steps) == 12
    assert all(s["transition"] == 5.0 for s in steps)
    brightness = [s["brightness"] for s in steps]
    assert brightness == sorted(brightness, reverse=True)
    assert steps[-1] == {"state": "ON", "brightness": 25, "color_temp": 450, "transition": 5.0}
    assert all(
        topic.endswith("/set") and qos == 1 and not retain for topic, _, qos, retain in sent.sent
    )
    await clock.advance(60)
    assert len(sent.sent) == 13


async def test_new_target_cancels_the_fade_and_starts_where_it_is():
    """An alarm override mid-fade goes out at once, and the old fade sends nothing more."""
    clock = ManualClock()
    sent = Recorder()
    driver = LightDriver(lights(z2m()), publish=sent, clock=clock)
    await driver.set(LightTarget(level_pct=50, colour_temp_k=3333, transition_s=0))
    await driver.set(LightTarget(level_pct=10, colour_temp_k=2222, transition_s=60))
    for _ in range(3):
        await clock.advance(5)
    assert len(sent.sent) == 5
    await driver.set(OVERRIDE)
    assert sent.payloads()[-1] == {
        "state": "ON",
        "brightness": 254,
        "color_temp": 250,
        "transition": 0.5,
    }
    await clock.advance(60)
    assert len(sent.sent) == 6
    # From the override (reached), a slow fade back starts at the override's values.
    await driver.set(LightTarget(level_pct=50, colour_temp_k=3333, transition_s=60))
    first = sent.payloads()[-1]
    assert first["brightness"] == round((100 - 50 / 12) * 254 / 100)
    assert first["color_temp"] == round(250 + 50 / 12)
    # Halfway through, a new fade starts from the halfway point.
    for _ in range(6):
        await clock.advance(5)
    await driver.set(LightTarget(level_pct=75, colour_temp_k=3333, transition_s=60))
    halfway = 250 + (300 - 250) / 2
    assert sent.payloads()[-1]["color_temp"] == round(halfway + (300 - halfway) / 12)
    assert sent.payloads()[-1]["brightness"] == round(75 * 254 / 100)
    await driver.aclose()


async def test_fade_to_off_dims_then_turns_off():
    """Some bulbs ignore an OFF transition: dim to the minimum, then OFF."""
    clock = ManualClock()
    sent = Recorder()
    driver = LightDriver(lights(z2m()), publish=sent, clock=clock)
    await driver.set(LightTarget(level_pct=30, colour_temp_k=2700, transition_s=0))
    await driver.set(LightTarget(level_pct=0, colour_temp_k=2700, transition_s=4))
    assert sent.payloads()[-1] == {
        "state": "ON",
        "brightness": 1,
        "color_temp": 370,
        "transition": 4.0,
    }
    await clock.advance(4)
    assert sent.payloads()[-1] == {"state": "OFF"}
    await driver.wait_idle()


async def test_override_goes_out_at_once_on_the_real_clock():
    """With the loop's own clock, the override is queued before `set` returns."""
    sent = Recorder()
    driver = LightDriver(lights(z2m(), TasmotaLight(adapter="tasmota", name="lamp1")), publish=sent)
    await driver.set(LightTarget(level_pct=10, colour_temp_k=2400, transition_s=600))
    before = len(sent.sent)
    await driver.set(OVERRIDE)
    assert [t for t, _, _, _ in sent.sent[before:]] == [
        "zigbee2mqtt/therapy1/ceiling/set",
        "cmnd/lamp1/Backlog",
    ]
    assert sent.sent[-1][1] == "SetOption117 1; Fade 1; Speed 1; CT 250; Dimmer 100"
    await driver.aclose()


async def test_simulation_speed_scales_native_transitions():
    """At 60x, a 30-session-second fade's 5 s steps are sent as 1/12 s native transitions."""
    clock = ManualClock()
    sent = Recorder()
    driver = LightDriver(lights(z2m()), publish=sent, clock=clock, speed=60)
    await driver.set(LightTarget(level_pct=50, colour_temp_k=2700, transition_s=0))
    await driver.set(LightTarget(level_pct=20, colour_temp_k=2700, transition_s=30))
    assert sent.payloads()[-1]["transition"] == 0.1
    with pytest.raises(ValueError, match="speed"):
        LightDriver(lights(), publish=sent, speed=0)
    await driver.aclose()


async def test_a_failing_publish_never_reaches_the_caller():
    """The room's ambience must not take the room controller down."""

    def broken(topic: str, payload: str | bytes, *, qos: int, retain: bool) -> None:
        raise RuntimeError(topic)

    driver = LightDriver(lights(z2m()), publish=broken)
    await driver.set(OVERRIDE)


# --- through a real broker ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory):
    if not mosquitto.available():
        pytest.skip("mosquitto is not installed")
    with Mosquitto(Path(tmp_path_factory.mktemp("mosquitto"))) as m:
        yield m


async def test_zigbee2mqtt_light_receives_the_fade_through_the_broker(broker: Mosquitto):
    """Via the bridge: the set topic gets each step in order; availability reaches `state`."""
    bus = Bus()
    settings = MqttSettings(enabled=True, port=broker.port, discovery=False)
    bridge = MqttBridge(
        settings=settings,
        room_id="lights-1",
        subscription=bus.subscribe("mqtt"),
        status=RoomStatus("lights-1"),
        control=cast("Control", None),  # this test sends no commands
        now=lambda: 0.0,
    )
    clock = ManualClock()
    driver = LightDriver(
        lights(z2m(name="lights-1/group", step_s=5, max_native_transition_s=5)),
        publish=bridge.publish,
        clock=clock,
    )
    bridge.attach_lights(driver)
    set_topic = "zigbee2mqtt/lights-1/group/set"
    async with listen(broker.port, set_topic, "sessiond/lights-1/#") as heard:
        task = asyncio.create_task(bridge.run())
        try:
            await heard.wait_for("sessiond/lights-1/availability", lambda m: m.payload == b"online")
            mark = heard.mark()
            await driver.set(LightTarget(level_pct=100, colour_temp_k=4000, transition_s=0))
            await heard.wait_for(set_topic, after=mark)
            mark = heard.mark()
            await driver.set(LightTarget(level_pct=0, colour_temp_k=2500, transition_s=15))
            await heard.wait_for(set_topic, after=mark)
            for _ in range(3):
                # One step at a time, so none is coalesced in the bridge's queue.
                mark = heard.mark()
                await clock.advance(5)
                await heard.wait_for(set_topic, after=mark)
            sequence = [m.json() for m in heard.on(set_topic)]
            assert sequence == [
                {"state": "ON", "brightness": 254, "color_temp": 250},
                {"state": "ON", "brightness": 169, "color_temp": 300, "transition": 5.0},
                {"state": "ON", "brightness": 85, "color_temp": 350, "transition": 5.0},
                {"state": "ON", "brightness": 1, "color_temp": 400, "transition": 5.0},
                {"state": "OFF"},
            ]
            assert all(not m.retain and m.qos == 1 for m in heard.on(set_topic))

            mark = heard.mark()
            async with listen(broker.port, "unused/#") as z2m_bridge:
                await z2m_bridge.client.publish(
                    "zigbee2mqtt/lights-1/group/availability", '{"state":"online"}', qos=1
                )
            state = await heard.wait_for(
                "sessiond/lights-1/state",
                lambda m: m.json().get("lights") == {"lights-1/group": "online"},
                after=mark,
            )
            assert state.retain is False  # live delivery; the broker keeps it retained
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await driver.aclose()
