"""The MQTT bridge against a real Mosquitto: topics, retained state, Will, commands, reconnect.

Each test uses its own room id (so its own topics) on a module-wide broker; the tests that
stop or reconfigure a broker start their own on a free port.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import shutil
import socket
import ssl
import subprocess
import sys
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiomqtt
import pytest
from pydantic import ValidationError

from sessiond.bus import Bus
from sessiond.model import (
    AlarmState,
    AlarmTransition,
    DeviceStatus,
    DischargeReadiness,
    DoseUnit,
    InfusionPrompt,
    NurseAction,
    Phase,
    PhaseChanged,
    Priority,
    Quality,
    Reading,
    RoomChanged,
    Route,
    SessionStarted,
)
from sessiond.room import mqtt
from sessiond.room.mqtt import MqttBridge, MqttSettings, backoff_delay, make_client
from sessiond.session.commands import CommandRejected, Control
from sessiond.status import RoomStatus
from tests import mosquitto
from tests.mosquitto import Listener, Mosquitto, Received, free_port, listen, password_file

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

pytestmark = pytest.mark.skipif(not mosquitto.available(), reason="mosquitto is not installed")

#: Longest a test waits for something that should happen at once.
WAIT_S = 5.0


# --- a stand-in for the session and room control ------------------------------------------------


class StubControl:
    """Records each command, publishes the nurse action the real control would, or refuses."""

    def __init__(self, bus: Bus, *, t: float = 1000.0) -> None:
        self.bus = bus
        self.t = t
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.called: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        #: Refuse every command with this reason.
        self.reject: str | None = None
        #: Commands that wait for `release` before doing anything (a slow control).
        self.slow: set[str] = set()
        self.release = asyncio.Event()

    def now(self) -> float:
        return self.t

    async def next_call(self) -> tuple[str, dict[str, Any]]:
        return await asyncio.wait_for(self.called.get(), WAIT_S)

    async def _do(self, name: str, **kw: Any) -> None:
        if name in self.slow:
            await self.release.wait()
        if self.reject is not None:
            raise CommandRejected(self.reject)
        self.calls.append((name, kw))
        self.called.put_nowait((name, kw))
        detail = {k: v for k, v in kw.items() if k not in {"user", "source"}}
        user, source = kw["user"], kw["source"]
        self.bus.publish(
            NurseAction(t=self.t, action=name, user=user, source=source, detail=detail)
        )

    async def start_session(self, *, route: Route, user: str, source: str) -> str:
        await self._do("start_session", route=route, user=user, source=source)
        return "sess-1"

    async def mark_dose(self, *, user: str, source: str, reason: str | None = None) -> None:
        await self._do("mark_dose", user=user, source=source, reason=reason)

    async def end_session(self, *, user: str, source: str) -> None:
        await self._do("end_session", user=user, source=source)

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
        await self._do("start_infusion", amount=amount, unit=unit, planned_min=planned_min,
                       reason=reason, user=user, source=source)  # fmt: skip

    async def pause_infusion(self, *, reason: str, user: str, source: str) -> None:
        await self._do("pause_infusion", reason=reason, user=user, source=source)

    async def resume_infusion(self, *, reason: str, user: str, source: str) -> None:
        await self._do("resume_infusion", reason=reason, user=user, source=source)

    async def stop_infusion(
        self,
        *,
        amount: float,
        unit: DoseUnit | None,
        user: str,
        source: str,
        reason: str | None = None,
    ) -> None:
        await self._do("stop_infusion", amount=amount, unit=unit, reason=reason, user=user,
                       source=source)  # fmt: skip

    async def acknowledge(self, *, alarm_id: str, user: str, source: str) -> None:
        await self._do("acknowledge", alarm_id=alarm_id, user=user, source=source)

    async def pause_audio(self, *, user: str, source: str) -> None:
        await self._do("pause_audio", user=user, source=source)

    async def add_note(self, *, text: str, user: str, source: str) -> None:
        await self._do("add_note", text=text, user=user, source=source)

    async def measure_nibp(self, *, user: str, source: str) -> None:
        await self._do("measure_nibp", user=user, source=source)

    async def set_scene(self, *, scene: str | None, pinned: bool, user: str, source: str) -> None:
        await self._do("set_scene", scene=scene, pinned=pinned, user=user, source=source)

    async def set_volume(self, *, volume_pct: int, pinned: bool, user: str, source: str) -> None:
        await self._do("set_volume", volume_pct=volume_pct, pinned=pinned, user=user, source=source)


# --- harness ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory):
    with Mosquitto(Path(tmp_path_factory.mktemp("mosquitto"))) as m:
        yield m


@pytest.fixture
def room() -> str:
    return f"room-{uuid.uuid4().hex[:8]}"


@dataclass(kw_only=True)
class Running:
    bus: Bus
    control: StubControl
    bridge: MqttBridge
    status: RoomStatus
    room: str
    task: asyncio.Task[None]

    def topic(self, leaf: str) -> str:
        return f"sessiond/{self.room}/{leaf}"


def fast_settings(port: int, **overrides: Any) -> MqttSettings:
    values: dict[str, Any] = {
        "enabled": True,
        "port": port,
        "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.2,
        "discovery_delay_max_s": 0.0,
        "state_min_interval_s": 0.0,
        **overrides,
    }
    return MqttSettings.model_validate(values)


@contextlib.asynccontextmanager
async def bridge_on(port: int, room: str, **overrides: Any) -> AsyncIterator[Running]:
    """A running bridge for `room` with a fresh bus and stub control; cancelled on exit."""
    bus = Bus()
    control = StubControl(bus)
    typed: Control = control  # the stub must satisfy the protocol
    status = RoomStatus(room)
    bridge = MqttBridge(
        settings=fast_settings(port, **overrides),
        room_id=room,
        subscription=bus.subscribe("mqtt"),
        status=status,
        control=typed,
        now=control.now,
    )
    task = asyncio.create_task(bridge.run())
    await settle()
    try:
        yield Running(bus=bus, control=control, bridge=bridge, status=status, room=room, task=task)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def settle() -> None:
    """Let woken tasks (the bridge's bus consumer) run before looking at their effects."""
    for _ in range(3):
        await asyncio.sleep(0)


def payload_is(value: bytes) -> Callable[[Received], bool]:
    return lambda m: m.payload == value


def json_has(**expected: Any) -> Callable[[Received], bool]:
    def match(m: Received) -> bool:
        data = m.json()
        return isinstance(data, dict) and all(data.get(k) == v for k, v in expected.items())

    return match


async def online(heard: Listener, r: Running, *, after: int = 0) -> Received:
    return await heard.wait_for(r.topic("availability"), payload_is(b"online"), after=after)


async def retained(port: int, topic_filter: str, count: int = 1, **kw: Any) -> list[Received]:
    """What a new subscriber gets at once: the retained messages on `topic_filter`."""
    async with listen(port, topic_filter, **kw) as fresh:
        return await fresh.wait_count(topic_filter, count, lambda m: m.retain)


async def send(port: int, topic: str, payload: str | bytes, *, retain: bool = False) -> None:
    async with aiomqtt.Client(mosquitto.HOST, port) as client:
        await client.publish(topic, payload, qos=1, retain=retain)


def spo2_alarm(t: float, state: AlarmState = AlarmState.ACTIVE, **kw: Any) -> AlarmTransition:
    return AlarmTransition(
        t=t,
        alarm_id="spo2_low",
        priority=kw.pop("priority", Priority.HIGH),
        state=state,
        value=kw.pop("value", 84.0),
        limit=kw.pop("limit", 85.0),
        **kw,
    )


# --- settings and the client (no broker) --------------------------------------------------------


def test_settings_defaults_and_validation():
    """Every key has a default; inconsistent TLS, backoff or topic settings are refused."""
    s = MqttSettings()
    assert (s.host, s.port, s.prefix, s.tls, s.discovery_prefix) == (
        "127.0.0.1",
        1883,
        "sessiond",
        False,
        "homeassistant",
    )
    assert s.reconnect_max_s == 30.0
    for bad in (
        {"ca_file": "/etc/ca.pem"},
        {"tls_insecure": True},
        {"tls": True, "key_file": "/k.pem"},
        {"reconnect_min_s": 5, "reconnect_max_s": 1},
        {"prefix": "a/#"},
        {"prefix": "/lead"},
        {"prefix": ""},
        {"password": "x"},
        {"vitals_max_rate_hz": 0},
        {"port": 0},
        {"unknown": 1},
    ):
        with pytest.raises(ValidationError):
            MqttSettings.model_validate(bad)
    MqttSettings(prefix="clinic/sessiond")


async def test_credentials_tls_will_and_client_id_reach_the_client():
    """User, password, TLS files, the insecure flag, keep-alive, the Will and a stable id."""
    settings = MqttSettings(
        host="broker.example",
        port=8883,
        username="room-1",
        password="secret",  # noqa: S106 - a test value
        tls=True,
        ca_file="/etc/sessiond/ca.pem",
        cert_file="/etc/sessiond/client.pem",
        key_file="/etc/sessiond/client.key",
        tls_insecure=True,
        keepalive_s=20,
    )
    client = make_client(settings, "room-1")
    paho = client._client
    assert client.identifier == "sessiond-room-1"
    assert (client._hostname, client._port, client._keepalive) == ("broker.example", 8883, 20)
    assert (paho._username, paho._password) == (b"room-1", b"secret")
    assert client._tls_params is not None
    assert client._tls_params.ca_certs == "/etc/sessiond/ca.pem"
    assert client._tls_params.certfile == "/etc/sessiond/client.pem"
    assert client._tls_params.keyfile == "/etc/sessiond/client.key"
    assert client._tls_params.cert_reqs == ssl.CERT_REQUIRED
    assert client._tls_insecure is True
    assert (paho._will_topic, paho._will_payload, paho._will_qos, paho._will_retain) == (
        b"sessiond/room-1/availability",
        b"offline",
        1,
        True,
    )
    plain = make_client(MqttSettings(client_id="custom-id", prefix="clinic/x"), "room-1")
    assert plain.identifier == "custom-id"
    assert plain._tls_params is None
    assert plain._tls_insecure is None
    assert plain._client._username is None
    assert plain._client._will_topic == b"clinic/x/room-1/availability"


def test_backoff_grows_exponentially_to_the_cap_with_jitter():
    """Half of each step is fixed, half random; the step doubles up to the maximum."""
    low = [backoff_delay(n, min_s=1, max_s=30, rand=lambda: 0.0) for n in range(8)]
    high = [backoff_delay(n, min_s=1, max_s=30, rand=lambda: 1.0) for n in range(8)]
    assert low == [0.5, 1, 2, 4, 8, 15, 15, 15]
    assert high == [1, 2, 4, 8, 16, 30, 30, 30]
    assert backoff_delay(10_000, min_s=1, max_s=30, rand=lambda: 1.0) == 30


# --- availability -------------------------------------------------------------------------------


async def test_online_retained_then_offline_on_clean_exit(broker: Mosquitto, room: str):
    """`online` (retained, QoS 1) while running, `offline` retained after a cancelled run."""
    topic = f"sessiond/{room}/availability"
    async with listen(broker.port, topic) as heard:
        async with bridge_on(broker.port, room) as r:
            await online(heard, r)
            (kept,) = await retained(broker.port, topic)
            assert (kept.payload, kept.retain) == (b"online", True)
            assert f"as sessiond-{room} " in broker.log()  # the stable client id
        await heard.wait_for(topic, payload_is(b"offline"))
    (kept,) = await retained(broker.port, topic)
    assert (kept.payload, kept.retain) == (b"offline", True)


async def test_bus_closing_ends_the_bridge_cleanly(broker: Mosquitto, room: str):
    """When the bus closes (daemon shutdown), queued events go out, then `offline`."""
    async with (
        listen(broker.port, f"sessiond/{room}/#") as heard,
        bridge_on(broker.port, room) as r,
    ):
        await online(heard, r)
        r.bus.publish(spo2_alarm(5.0))
        r.bus.close()
        await asyncio.wait_for(r.task, WAIT_S)
        event = await heard.wait_for(r.topic("event"))
        offline = await heard.wait_for(r.topic("availability"), payload_is(b"offline"))
        assert heard.messages.index(event) < heard.messages.index(offline)


WILL_SCRIPT = """
import asyncio, sys
from sessiond.bus import Bus
from sessiond.room.mqtt import MqttBridge, MqttSettings
from sessiond.status import RoomStatus

async def main():
    port, room = int(sys.argv[1]), sys.argv[2]
    bus = Bus()
    bridge = MqttBridge(
        settings=MqttSettings(enabled=True, port=port), room_id=room,
        subscription=bus.subscribe("mqtt"), status=RoomStatus(room), control=None,
        now=lambda: 0.0,
    )
    await bridge.run()

asyncio.run(main())
"""


async def test_will_says_offline_when_the_process_dies(broker: Mosquitto, room: str):
    """SIGKILL: no clean exit, so the broker publishes the Will (retained `offline`)."""
    topic = f"sessiond/{room}/availability"
    async with listen(broker.port, topic) as heard:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", WILL_SCRIPT, str(broker.port), room,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True,
        )  # fmt: skip
        try:
            await heard.wait_for(topic, payload_is(b"online"), within_s=15.0)
        finally:
            mark = heard.mark()
            proc.kill()
            _, stderr = await proc.communicate()
        will = await heard.wait_for(topic, payload_is(b"offline"), after=mark)
        assert will.qos == 1, stderr.decode()
    (kept,) = await retained(broker.port, topic)
    assert (kept.payload, kept.retain) == (b"offline", True)


# --- state, alarm, events, vitals ---------------------------------------------------------------


async def test_retained_state_and_alarm_follow_the_bus(broker: Mosquitto, room: str):
    """Session, phase, dose, alarms, scene, music and device links; cleared alarms go away."""
    async with (
        listen(broker.port, f"sessiond/{room}/#") as heard,
        bridge_on(broker.port, room) as r,
    ):
        await online(heard, r)
        r.bus.publish(SessionStarted(t=100.0, session_id="a1b2c3", route=Route.IV, user="nurse1"))
        r.bus.publish(PhaseChanged(t=100.0, phase=Phase.BASELINE))
        r.bus.publish(NurseAction(t=400.0, action="dose", user="nurse1", source="console"))
        r.bus.publish(PhaseChanged(t=400.0, phase=Phase.ONSET))
        r.bus.publish(spo2_alarm(900.0, phase=Phase.ONSET))
        r.bus.publish(
            AlarmTransition(t=950.0, alarm_id="nibp_overdue", priority=Priority.MEDIUM,
                            state=AlarmState.ACTIVE)
        )  # fmt: skip
        r.bus.publish(DeviceStatus(t=90.0, device="spo2", connected=True, detail="opened"))
        r.bus.publish(
            RoomChanged(t=400.0, scene="onset", light_pct=12.0, colour_temp_k=2400,
                        playlist="onset", volume_pct=45)
        )  # fmt: skip
        r.bus.publish(DischargeReadiness(t=950.0, ready=False, unmet=("time",)))
        await heard.wait_for(
            r.topic("state"), json_has(phase="onset", discharge={"ready": False, "unmet": ["time"]})
        )

        kept = {m.topic: m for m in await retained(broker.port, f"sessiond/{room}/+", 3)}
        assert all(m.retain for m in kept.values())
        state = kept[r.topic("state")].json()
        assert state["room"] == room
        assert state["session"] == {
            "id": "a1b2c3",
            "route": "iv",
            "minutes_since_start": 15.0,  # the control's clock says 1000 s
            "minutes_since_dose": 10.0,
        }
        assert state["phase"] == "onset"
        assert [a["id"] for a in state["alarms"]] == ["spo2_low", "nibp_overdue"]
        assert state["scene"]["name"] == "onset"
        assert state["scene"]["colour_temp_k"] == 2400
        assert state["music"] == {"playlist": "onset", "volume_pct": 45, "ducked": False}
        assert state["devices"] == {"spo2": {"connected": True, "detail": "opened"}}
        alarm = kept[r.topic("alarm")].json()
        assert alarm[0] == {
            "t": 900.0,
            "type": "alarm",
            "id": "spo2_low",
            "priority": "high",
            "state": "active",
            "value": 84.0,
            "limit": 85.0,
            "acknowledged": False,
        }
        assert alarm[1]["id"] == "nibp_overdue"

        mark = heard.mark()
        r.bus.publish(NurseAction(t=960.0, action="ack", user="nurse1", source="console",
                                  detail={"alarm_id": "spo2_low"}))  # fmt: skip
        acked = await heard.wait_for(
            r.topic("alarm"), lambda m: m.json()[0]["acknowledged"], after=mark
        )
        assert acked.json()[0]["id"] == "spo2_low"
        r.bus.publish(spo2_alarm(970.0, AlarmState.CLEARED))
        r.bus.publish(AlarmTransition(t=970.0, alarm_id="nibp_overdue", priority=Priority.MEDIUM,
                                      state=AlarmState.CLEARED))  # fmt: skip
        await heard.wait_for(r.topic("alarm"), payload_is(b"[]"), after=mark)
        await heard.wait_for(r.topic("state"), json_has(alarms=[]), after=mark)
    (alarm_kept,) = await retained(broker.port, f"sessiond/{room}/alarm")
    assert alarm_kept.payload == b"[]"


async def test_events_for_alarm_transitions_and_nurse_actions(broker: Mosquitto, room: str):
    """Each transition and action on `event` (QoS 1, not retained), in order."""
    async with (
        listen(broker.port, f"sessiond/{room}/#") as heard,
        bridge_on(broker.port, room) as r,
    ):
        await online(heard, r)
        r.bus.publish(spo2_alarm(10.0, AlarmState.ACTIVE, priority=Priority.MEDIUM, value=88.0,
                                 limit=90.0, phase=Phase.ONSET))  # fmt: skip
        ack = {"alarm_id": "spo2_low", "priority": "medium"}
        r.bus.publish(NurseAction(t=11.0, action="ack", user="nurse1", source="console",
                                  detail=ack))  # fmt: skip
        r.bus.publish(NurseAction(t=12.0, action="dose", user="nurse2", source="mqtt",
                                  detail={"override_reason": "reviewed by Dr X"}))  # fmt: skip
        r.bus.publish(spo2_alarm(13.0, AlarmState.CLEARED, priority=Priority.MEDIUM))
        r.bus.publish(PhaseChanged(t=14.0, phase=Phase.EFFECT))  # state only, not an event
        await heard.wait_for(r.topic("event"), json_has(state="cleared"))
        events = heard.on(r.topic("event"))
        assert all(m.qos == 1 and not m.retain for m in events)
        assert [m.json() for m in events] == [
            {"t": 10.0, "type": "alarm", "id": "spo2_low", "priority": "medium",
             "state": "active", "value": 88.0, "limit": 90.0, "phase": "onset"},
            {"t": 11.0, "type": "action", "action": "ack", "user": "nurse1",
             "source": "console", "alarm_id": "spo2_low", "priority": "medium"},
            {"t": 12.0, "type": "action", "action": "dose", "user": "nurse2",
             "source": "mqtt", "override": True},
            {"t": 13.0, "type": "alarm", "id": "spo2_low", "priority": "medium",
             "state": "cleared", "value": 84.0, "limit": 85.0},
        ]  # fmt: skip


async def test_the_infusion_prompt_goes_on_event_and_the_infusion_in_state(
    broker: Mosquitto, room: str
):
    """A confirmed critical BP while the infusion runs: `infusion_prompt` on `event`, the
    infusion (no reasons) in `state`; advice only, nothing is published to act on a pump."""
    async with (
        listen(broker.port, f"sessiond/{room}/#") as heard,
        bridge_on(broker.port, room) as r,
    ):
        await online(heard, r)
        r.bus.publish(SessionStarted(t=100.0, session_id="a1b2c3", route=Route.IV, user="n"))
        plan = {"planned_amount": 0.5, "unit": "mg/kg", "planned_min": 40.0}
        r.bus.publish(NurseAction(t=400.0, action="infusion_start", user="n", source="console",
                                  detail=plan))  # fmt: skip
        readings = ((880.0, 186.0, 112.0), (910.0, 188.0, 114.0))
        r.bus.publish(InfusionPrompt(t=910.0, active=True, readings=readings))
        r.bus.publish(NurseAction(t=950.0, action="infusion_pause", user="n", source="console",
                                  detail={"reason": "Jane's BP", "infused_min": 9.2}))  # fmt: skip
        r.bus.publish(InfusionPrompt(t=950.0, active=False, reason="infusion paused"))
        gone = await heard.wait_for(
            r.topic("event"), json_has(type="infusion_prompt", active=False)
        )
        (shown,) = [m for m in heard.on(r.topic("event")) if m.json().get("active") is True]
        assert shown.json() == {
            "t": 910.0, "type": "infusion_prompt", "active": True,
            "advice": "pause the infusion / notify the prescriber",
            "readings": [{"t": 880.0, "sys": 186.0, "dia": 112.0},
                         {"t": 910.0, "sys": 188.0, "dia": 114.0}],
        }  # fmt: skip
        assert gone.json()["reason"] == "infusion paused"
        state = await heard.wait_for(
            r.topic("state"), lambda m: (m.json()["infusion"] or {}).get("state") == "paused"
        )
        infusion = state.json()["infusion"]
        assert (infusion["planned_amount"], infusion["unit"], infusion["prompt"]) == (
            0.5, "mg/kg", None)  # fmt: skip
        assert infusion["pauses"] == [{"t": 950.0, "until_t": None}]
        published = [m for m in heard.messages if "/cmd/" not in m.topic]
        assert all(b"Jane" not in m.payload for m in published)


async def test_vitals_are_rate_limited_latest_values_with_quality(broker: Mosquitto, room: str):
    """50 readings a second become at most `vitals_max_rate_hz` messages (QoS 0, live)."""
    rate = 5.0
    async with (
        listen(broker.port, f"sessiond/{room}/#") as heard,
        bridge_on(broker.port, room, vitals_max_rate_hz=rate) as r,
    ):
        await online(heard, r)
        r.bus.publish(Reading(t=r.control.t - 60, device="nibp", sys=128, dia=82, map=97, pr=70))
        loop = asyncio.get_running_loop()
        started = loop.time()
        for i in range(50):
            r.bus.publish(Reading(t=r.control.t, device="spo2", spo2=96, pr=70 + i % 3, pi=2.5))
            await asyncio.sleep(0.02)  # a 50 Hz stream, not a wait
        r.bus.publish(
            Reading(t=r.control.t, device="spo2", spo2=91, pr=88, pi=0.4,
                    flags=Quality.LOW_PERFUSION)
        )  # fmt: skip
        last = await heard.wait_for(r.topic("vitals"), json_has(spo2=91))
        elapsed = loop.time() - started
        vitals = heard.on(r.topic("vitals"))
        assert 2 <= len(vitals) <= rate * elapsed + 2
        assert all(m.qos == 0 and not m.retain for m in vitals)
        data = last.json()
        assert (data["spo2"], data["pr"], data["pi"]) == (91, 88, 0.4)
        assert data["flags"] == ["low_perfusion"]
        assert (data["sys"], data["dia"], data["map"], data["bp_age_s"]) == (128, 82, 97, 60.0)
        assert data["devices"]["spo2"]["flags"] == ["low_perfusion"]
        assert data["devices"]["nibp"]["sys"] == 128
        assert await retained_or_none(broker.port, r.topic("vitals")) is None


async def retained_or_none(port: int, topic: str) -> Received | None:
    """The retained message on `topic`, or None when the broker has none.

    To know that nothing is retained, a second topic is published after subscribing: the
    broker sends retained messages before anything published later.
    """
    probe = f"probe/{uuid.uuid4().hex}"
    async with listen(port, topic, probe) as fresh:
        await fresh.client.publish(probe, b"x", qos=1)
        await fresh.wait_for(probe)
        found = fresh.on(topic)
        return found[0] if found else None


async def test_stream_values_go_stale(broker: Mosquitto, room: str):
    """A streaming device silent for over 10 s shows no current values (BP stays)."""
    readings = {
        "spo2": Reading(t=100.0, device="spo2", spo2=97, pr=70, pi=3.0),
        "nibp": Reading(t=95.0, device="nibp", sys=120, dia=80, map=93),
    }
    fresh = mqtt.vitals_json(readings, 105.0)
    stale = mqtt.vitals_json(readings, 111.0)
    assert (fresh["spo2"], fresh["pr"]) == (97, 70)
    assert (stale["spo2"], stale["pr"], stale["pi"], stale["flags"]) == (None, None, None, [])
    assert (stale["sys"], stale["dia"]) == (120, 80)
    assert stale["devices"]["spo2"]["age_s"] == 11.0


# --- commands -----------------------------------------------------------------------------------

VALID_COMMANDS: list[tuple[str, dict[str, Any], str, dict[str, Any]]] = [
    ("session/start", {"route": "iv", "user": "nurse1"},
     "start_session", {"route": Route.IV}),
    ("dose", {"user": "nurse1"}, "mark_dose", {"reason": None}),
    ("dose", {"user": "nurse1", "reason": "prescriber reviewed"},
     "mark_dose", {"reason": "prescriber reviewed"}),
    ("ack", {"alarm": "spo2_low", "user": "nurse1"}, "acknowledge", {"alarm_id": "spo2_low"}),
    ("pause", {"user": "nurse1"}, "pause_audio", {}),
    ("scene", {"scene": "calm", "pinned": True, "user": "nurse1"},
     "set_scene", {"scene": "calm", "pinned": True}),
    ("scene", {"scene": None, "user": "nurse1"}, "set_scene", {"scene": None, "pinned": False}),
    ("volume", {"volume": 45, "pinned": False, "user": "nurse1"},
     "set_volume", {"volume_pct": 45, "pinned": False}),
    ("volume", {"volume": 0, "user": "nurse1"}, "set_volume", {"volume_pct": 0, "pinned": False}),
    ("note", {"text": "resting, eyes closed", "user": " nurse1 "},
     "add_note", {"text": "resting, eyes closed"}),
    ("nibp/measure", {"user": "nurse1", "transaction": "t-9"}, "measure_nibp", {}),
    ("infusion/start", {"amount": 0.5, "unit": "mg/kg", "planned_min": 40, "user": "nurse1"},
     "start_infusion", {"amount": 0.5, "unit": DoseUnit.MG_PER_KG, "planned_min": 40.0,
                        "reason": None}),
    ("infusion/pause", {"reason": "BP 186/112", "user": "nurse1"},
     "pause_infusion", {"reason": "BP 186/112"}),
    ("infusion/resume", {"reason": "prescriber: go on", "user": "nurse1"},
     "resume_infusion", {"reason": "prescriber: go on"}),
    ("infusion/stop", {"amount": 35, "unit": "mg", "user": "nurse1"},
     "stop_infusion", {"amount": 35.0, "unit": DoseUnit.MG, "reason": None}),
    ("infusion/stop", {"amount": 0.5, "user": "nurse1"},
     "stop_infusion", {"amount": 0.5, "unit": None, "reason": None}),
    ("session/end", {"user": "nurse1"}, "end_session", {}),
]  # fmt: skip


async def test_each_valid_command_calls_the_control(broker: Mosquitto, room: str):
    """Every action with a valid payload calls the control once, as `user` from `mqtt`."""
    async with (
        listen(broker.port, f"sessiond/{room}/#") as heard,
        bridge_on(broker.port, room) as r,
    ):
        await online(heard, r)
        for action, payload, method, args in VALID_COMMANDS:
            await send(broker.port, r.topic(f"cmd/{action}"), json.dumps(payload))
            assert await r.control.next_call() == (
                method,
                {**args, "user": "nurse1", "source": "mqtt"},
            ), action
        events = await heard.wait_count(r.topic("event"), len(VALID_COMMANDS))
        assert all(e.json()["type"] == "action" and e.json()["source"] == "mqtt" for e in events)
        assert events[0].json()["route"] == "iv"
        assert "text" not in events[9].json()  # the note's text stays off MQTT
        # A pause's reason is free text: it stays off MQTT too; the numbers go out.
        assert "reason" not in events[12].json()
        assert events[11].json()["planned_min"] == 40.0


BAD_COMMANDS: list[tuple[str, bytes, str]] = [
    ("dose", b"{not json", "payload: not valid JSON"),
    ("dose", b"[1, 2]", "payload: Input should be an object"),
    ("dose", b"", "payload: not valid JSON"),
    ("launch", b'{"user": "nurse1"}', "unknown command"),
    ("session/start", b'{"route": "iv"}', "user: required"),
    ("session/start", b'{"route": "iv", "user": "   "}', "user: String should have at least"),
    ("session/start", b'{"route": "iv-drip", "user": "n"}', "route: Input should be"),
    ("volume", b'{"volume": 101, "user": "n"}', "volume: Input should be less than or equal"),
    ("volume", b'{"volume": -1, "user": "n"}', "volume: Input should be greater than or equal"),
    ("volume", b'{"volume": "40", "user": "n"}', "volume: Input should be a valid integer"),
    ("volume", b'{"volume": 40, "pinned": "yes", "user": "n"}', "pinned: Input should be"),
    ("ack", b'{"alarm": "SPO2 LOW!", "user": "n"}', "alarm: String should match"),
    ("pause", b'{"user": "n", "force": true}', "force: unknown field"),
    ("scene", b'{"user": "n"}', "scene: required"),
    ("note", b'{"text": "", "user": "n"}', "text: String should have at least"),
    ("infusion/start", b'{"amount": 0.5, "unit": "mg/kg", "user": "n"}', "planned_min: required"),
    ("infusion/start", b'{"amount": NaN, "unit": "mg", "planned_min": 40, "user": "n"}',
     "amount:"),
    ("infusion/start", b'{"amount": 900, "unit": "mg", "planned_min": 40, "user": "n"}',
     "amount: Input should be less than or equal to 500"),
    ("infusion/start", b'{"amount": 5, "unit": "ml", "planned_min": 40, "user": "n"}',
     "unit: Input should be"),
    ("infusion/start", b'{"amount": 5, "unit": "mg", "planned_min": 1e9, "user": "n"}',
     "planned_min: Input should be less than or equal to 240"),
    ("infusion/pause", b'{"user": "n"}', "reason: required"),
    ("infusion/resume", b'{"reason": " ", "user": "n"}', "reason: String should have at least"),
    ("infusion/stop", b'{"amount": -1, "user": "n"}', "amount: Input should be greater"),
]  # fmt: skip


async def test_bad_commands_get_an_error_event_and_change_nothing(broker: Mosquitto, room: str):
    """Bad JSON, unknown action, bad or missing fields, a retained command, a refusal."""
    retained_cmd = json.dumps({"user": "nurse1", "transaction": "old"})
    await send(broker.port, f"sessiond/{room}/cmd/dose", retained_cmd, retain=True)
    async with (
        listen(broker.port, f"sessiond/{room}/#") as heard,
        bridge_on(broker.port, room) as r,
    ):
        stale = await heard.wait_for(r.topic("event"), json_has(type="error"))
        assert stale.json() == {
            "t": 1000.0,
            "type": "error",
            "command": "dose",
            "error": "retained commands are ignored",
            "transaction": "old",
        }
        for action, payload, _ in BAD_COMMANDS:
            await send(broker.port, r.topic(f"cmd/{action}"), payload)
        r.control.reject = "no session is running"
        await send(broker.port, r.topic("cmd/dose"), b'{"user": "n", "transaction": "t-1"}')
        expected = [(action, error) for action, _, error in BAD_COMMANDS]
        expected.append(("dose", "no session is running"))
        errors = await heard.wait_count(r.topic("event"), len(expected) + 1, json_has(type="error"))
        errors = errors[1:]  # after the retained one
        got = [(e.json()["command"], e.json()["error"]) for e in errors]
        for (action, error), (got_action, got_error) in zip(expected, got, strict=True):
            assert got_action == action
            assert got_error.startswith(error), (action, got_error)
        assert errors[-1].json()["transaction"] == "t-1"
        assert r.control.calls == []
        # The bridge still works: a good command after all the bad ones is the only call.
        r.control.reject = None
        await send(broker.port, r.topic("cmd/pause"), b'{"user": "nurse1"}')
        assert await r.control.next_call() == ("pause_audio", {"user": "nurse1", "source": "mqtt"})
        assert r.control.calls == [("pause_audio", {"user": "nurse1", "source": "mqtt"})]


async def test_a_slow_command_does_not_stall_the_others(broker: Mosquitto, room: str):
    """Commands run as tasks: a note goes through while a session start is still busy."""
    async with (
        listen(broker.port, f"sessiond/{room}/#") as heard,
        bridge_on(broker.port, room) as r,
    ):
        await online(heard, r)
        r.control.slow = {"start_session"}
        await send(broker.port, r.topic("cmd/session/start"), b'{"route": "im", "user": "a"}')
        await send(broker.port, r.topic("cmd/note"), b'{"text": "calm", "user": "b"}')
        assert (await r.control.next_call())[0] == "add_note"
        r.control.release.set()
        assert (await r.control.next_call())[0] == "start_session"


async def test_no_patient_identifier_in_any_payload(broker: Mosquitto, room: str):
    """Notes and override reasons are free text: they stay in the record, off MQTT."""
    secret = "Jane Q. Patient"  # noqa: S105 - a patient's name, not a password
    async with (
        listen(broker.port, f"sessiond/{room}/#", "homeassistant/#") as heard,
        bridge_on(broker.port, room) as r,
    ):
        await online(heard, r)
        r.bus.publish(SessionStarted(t=1.0, session_id="8f3a9c", route=Route.IV, user="nurse1"))
        r.bus.publish(NurseAction(t=2.0, action="dose", user="nurse1", source="console",
                                  detail={"override_reason": f"{secret} reviewed"}))  # fmt: skip
        r.bus.publish(NurseAction(t=3.0, action="note", user="nurse1", source="console",
                                  detail={"text": f"{secret} feels fine"}))  # fmt: skip
        r.bus.publish(Reading(t=r.control.t, device="spo2", spo2=97, pr=70, pi=3.0))
        await send(broker.port, r.topic("cmd/note"), json.dumps({"text": secret, "user": "n"}))
        await send(
            broker.port, r.topic("cmd/note"), json.dumps({"text": secret * 200, "user": "n"})
        )
        await heard.wait_for(r.topic("event"), json_has(action="add_note"))
        await heard.wait_for(r.topic("event"), json_has(type="error"))
        await heard.wait_for(r.topic("vitals"))
        await heard.wait_for(r.topic("state"), lambda m: m.json()["session"] is not None)
        published = [m for m in heard.messages if not m.topic.startswith(f"sessiond/{room}/cmd/")]
        assert {m.topic.rsplit("/", 1)[-1] for m in published} >= {
            "availability", "state", "alarm", "event", "vitals", "config",
        }  # fmt: skip
        for m in published:
            assert b"Jane" not in m.payload, m.topic


# --- broker failures ----------------------------------------------------------------------------


async def test_a_dead_broker_never_holds_up_the_bus(room: str):
    """With no broker, events are folded at once, vitals dropped, the event backlog bounded."""
    async with bridge_on(free_port(), room, event_backlog=5) as r:
        for i in range(8):
            r.bus.publish(spo2_alarm(float(i)))
        for _ in range(2000):
            r.bus.publish(Reading(t=10.0, device="spo2", spo2=95, pr=60))
        r.bus.publish(PhaseChanged(t=11.0, phase=Phase.ONSET))
        await settle()
        assert len(r.bridge._sub) == 0
        assert r.status.phase is Phase.ONSET
        assert r.status.readings["spo2"].spo2 == 95
        assert not r.bridge.connected
        assert r.bridge.events_dropped == 3
        assert [json.loads(e.payload)["t"] for e in r.bridge._events] == [3, 4, 5, 6, 7]
        assert not r.bridge._vitals_dirty


async def test_broker_restart_reconnects_and_republishes(
    tmp_path: Path, room: str, monkeypatch: pytest.MonkeyPatch
):
    """After a restart: `online`, the state changed meanwhile, the backlog, and commands."""
    backed_off = asyncio.Event()
    delays: list[float] = []

    def backoff(attempt: int, *, min_s: float, max_s: float) -> float:
        backed_off.set()
        return delays.pop(0) if delays else 0.05

    monkeypatch.setattr(mqtt, "backoff_delay", backoff)
    with Mosquitto(tmp_path) as broker:
        async with bridge_on(broker.port, room) as r:
            async with listen(broker.port, f"sessiond/{room}/#") as heard:
                await online(heard, r)
                r.bus.publish(SessionStarted(t=1.0, session_id="s9", route=Route.IM, user="n1"))
                r.bus.publish(PhaseChanged(t=1.0, phase=Phase.BASELINE))
                await heard.wait_for(r.topic("state"), json_has(phase="baseline"))
            # The bridge's first retry waits 1 s: long enough for the listener to be back first.
            delays.append(1.0)
            backed_off.clear()
            broker.stop()
            await asyncio.wait_for(backed_off.wait(), WAIT_S)
            assert not r.bridge.connected
            r.bus.publish(NurseAction(t=600.0, action="dose", user="n1", source="console"))
            r.bus.publish(PhaseChanged(t=600.0, phase=Phase.ONSET))
            r.bus.publish(spo2_alarm(700.0))
            r.bus.publish(Reading(t=700.0, device="spo2", spo2=84, pr=99))
            broker.start()
            async with listen(broker.port, f"sessiond/{room}/#") as heard:
                await online(heard, r)
                assert r.bridge.connections == 2
                dose = await heard.wait_for(r.topic("event"), json_has(action="dose"))
                alarm_event = await heard.wait_for(r.topic("event"), json_has(type="alarm"))
                assert heard.messages.index(dose) < heard.messages.index(alarm_event)
                await heard.wait_for(r.topic("alarm"), lambda m: m.json()[0]["id"] == "spo2_low")
                state = await heard.wait_for(r.topic("state"), json_has(phase="onset"))
                assert state.json()["session"]["id"] == "s9"
                assert state.json()["session"]["minutes_since_dose"] == 6.7
                await send(broker.port, r.topic("cmd/ack"), b'{"alarm": "spo2_low", "user": "n2"}')
                assert await r.control.next_call() == (
                    "acknowledge",
                    {"alarm_id": "spo2_low", "user": "n2", "source": "mqtt"},
                )
            kept = {m.topic: m for m in await retained(broker.port, f"sessiond/{room}/+", 3)}
            assert kept[r.topic("availability")].payload == b"online"
            assert kept[r.topic("state")].json()["phase"] == "onset"


async def test_password_protected_broker(
    tmp_path: Path, room: str, monkeypatch: pytest.MonkeyPatch
):
    """The right user and password connect; a wrong one never does (and keeps retrying)."""
    attempts = asyncio.Queue[int]()

    def backoff(attempt: int, *, min_s: float, max_s: float) -> float:
        attempts.put_nowait(attempt)
        return 0.02

    monkeypatch.setattr(mqtt, "backoff_delay", backoff)
    users = {"sessiond-room": "s3cret", "watcher": "w4tch"}
    passwords = password_file(tmp_path / "passwd", users)
    with Mosquitto(
        tmp_path, allow_anonymous=False, extra_config=(f"password_file {passwords}",)
    ) as broker:
        auth = {"username": "watcher", "password": "w4tch"}
        async with listen(broker.port, f"sessiond/{room}/#", **auth) as heard:
            async with bridge_on(
                broker.port,
                room,
                username="sessiond-room",
                password="wrong",  # noqa: S106
            ) as r:
                for _ in range(3):
                    await asyncio.wait_for(attempts.get(), WAIT_S)
                assert r.bridge.connections == 0
            async with bridge_on(
                broker.port,
                room,
                username="sessiond-room",
                password="s3cret",  # noqa: S106
            ) as r:
                await online(heard, r)
                assert "u'sessiond-room'" in broker.log()


def make_certificates(directory: Path) -> dict[str, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 (openssl CLI)."""
    ca_key, ca = directory / "ca.key", directory / "ca.pem"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n", encoding="utf-8")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    commands = [
        ["openssl", "req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "1",
         "-subj", "/CN=sessiond test CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["openssl", "req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key,
         "-CAcreateserial", "-out", cert, "-days", "1", "-extfile", ext],
    ]  # fmt: skip
    for command in commands:
        subprocess.run([str(c) for c in command], check=True, capture_output=True)
    return {"ca": ca, "cert": cert, "key": key}


def record_clients(monkeypatch: pytest.MonkeyPatch) -> list[aiomqtt.Client]:
    """The clients the bridge makes from now on (one per connection attempt)."""
    made: list[aiomqtt.Client] = []

    def recording(settings: MqttSettings, room_id: str) -> aiomqtt.Client:
        client = make_client(settings, room_id)
        made.append(client)
        return client

    monkeypatch.setattr(mqtt, "make_client", recording)
    return made


def assert_no_nagle(client: aiomqtt.Client) -> None:
    sock = client._client.socket()
    assert isinstance(sock, socket.socket)  # an ssl.SSLSocket is one too
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
async def test_tls_broker_is_verified(tmp_path: Path, room: str, monkeypatch: pytest.MonkeyPatch):
    """TLS with the clinic's CA connects; without it the broker's certificate is refused."""
    attempts = asyncio.Queue[int]()

    def backoff(attempt: int, *, min_s: float, max_s: float) -> float:
        attempts.put_nowait(attempt)
        return 0.02

    monkeypatch.setattr(mqtt, "backoff_delay", backoff)
    certs = make_certificates(tmp_path)
    tls_config = (f"cafile {certs['ca']}", f"certfile {certs['cert']}", f"keyfile {certs['key']}")
    with Mosquitto(tmp_path, extra_config=tls_config) as broker:
        # paho leaves the socket of a failed TLS handshake to the garbage collector
        # (`_ssl_wrap_socket` does not close it): collect those here, warnings ignored.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            async with bridge_on(broker.port, room, tls=True) as r:
                for _ in range(2):
                    await asyncio.wait_for(attempts.get(), WAIT_S)
                assert r.bridge.connections == 0  # the system's CAs do not know ours
            gc.collect()
        tls = aiomqtt.TLSParameters(ca_certs=str(certs["ca"]))
        made = record_clients(monkeypatch)
        async with (
            listen(broker.port, f"sessiond/{room}/#", tls_params=tls) as heard,
            bridge_on(broker.port, room, tls=True, ca_file=str(certs["ca"])) as r,
        ):
            await online(heard, r)
            assert r.bridge.connections == 1
            assert_no_nagle(made[-1])  # set on the TLS socket too


async def test_alarms_are_not_held_by_nagles_algorithm(
    broker: Mosquitto, room: str, monkeypatch: pytest.MonkeyPatch
):
    """The connection's socket has TCP_NODELAY: a small alarm publish never waits behind an
    unacknowledged QoS 0 `vitals` message for the broker's delayed ACK (up to ~40 ms)."""
    made = record_clients(monkeypatch)
    async with (
        listen(broker.port, f"sessiond/{room}/availability") as heard,
        bridge_on(broker.port, room) as r,
    ):
        await online(heard, r)
        assert_no_nagle(made[-1])


# --- Home Assistant -----------------------------------------------------------------------------


async def test_discovery_is_retained_and_resent_when_home_assistant_starts(
    broker: Mosquitto, room: str
):
    """Per-entity configs, retained; `homeassistant/status` `online` sends them again."""
    configs = f"homeassistant/+/sessiond_{room}/+/config"
    async with (
        listen(broker.port, configs, f"sessiond/{room}/#") as heard,
        bridge_on(broker.port, room) as r,
    ):
        await online(heard, r)
        first = await heard.wait_count(configs, 11)
        kept = await retained(broker.port, configs, 11)
        assert all(m.retain and m.qos == 1 for m in kept)
        assert {m.topic for m in kept} == {m.topic for m in first}
        assert all(m.json()["device"]["identifiers"] == [f"sessiond_{room}"] for m in kept)

        mark = heard.mark()
        await send(broker.port, "homeassistant/status", b"offline")
        await send(broker.port, "homeassistant/status", b"online")
        again = await heard.wait_count(configs, 11, after=mark)
        assert sorted(m.topic for m in again) == sorted(m.topic for m in first)
        await heard.wait_for(r.topic("state"), after=mark)


async def test_discovery_can_be_turned_off(broker: Mosquitto, room: str):
    """`discovery = false` publishes no configs."""
    async with (
        listen(broker.port, f"sessiond/{room}/#") as heard,
        bridge_on(broker.port, room, discovery=False) as r,
    ):
        await online(heard, r)
        await heard.wait_for(r.topic("state"))
        assert r.bridge._pending == {}
        assert (
            await retained_or_none(broker.port, f"homeassistant/+/sessiond_{room}/+/config") is None
        )


# --- the writer's schedule and routing ----------------------------------------------------------


def test_state_and_vitals_are_throttled_and_state_refreshed():
    """State at most every `state_min_interval_s`, vitals at `vitals_max_rate_hz`, and the
    state again every `state_refresh_s` during a session (minutes since dose move on)."""
    bus = Bus()
    control = StubControl(bus)
    status = RoomStatus("room-t")
    settings = MqttSettings(state_min_interval_s=0.2, vitals_max_rate_hz=2, state_refresh_s=60)
    bridge = MqttBridge(
        settings=settings,
        room_id="room-t",
        subscription=bus.subscribe("mqtt"),
        status=status,
        control=control,
        now=control.now,
    )
    kinds = [bridge._next(100.0)[0], bridge._next(100.0)[0]]
    assert [k.kind if k else None for k in kinds] == ["alarm", "state"]
    assert bridge._next(100.0) == (None, None)
    bridge._on_event(SessionStarted(t=1.0, session_id="s", route=Route.IV, user="n"))
    bridge._on_event(PhaseChanged(t=1.0, phase=Phase.BASELINE))
    assert bridge._next(100.05)[0] is not None  # the alarm list (a new session)
    out, wait = bridge._next(100.05)
    assert out is None
    assert wait == pytest.approx(0.15)
    out, _ = bridge._next(100.2)
    assert out is not None
    assert out.kind == "state"
    assert out.retain
    assert json.loads(out.payload)["phase"] == "baseline"

    bridge._on_event(Reading(t=2.0, device="spo2", spo2=97))
    assert not bridge._vitals_dirty  # not connected: vitals are dropped
    bridge.connected = True
    bridge._on_event(Reading(t=2.0, device="spo2", spo2=97))
    out, _ = bridge._next(101.0)
    assert out is not None
    assert (out.kind, out.qos, out.retain) == ("vitals", 0, False)
    bridge._on_event(Reading(t=2.1, device="spo2", spo2=96))
    out, wait = bridge._next(101.1)
    assert out is None
    assert wait == pytest.approx(0.4)
    out, wait = bridge._next(101.5)
    assert out is not None
    assert out.kind == "vitals"

    out, wait = bridge._next(159.0)
    assert out is None
    assert wait == pytest.approx(1.2)
    out, _ = bridge._next(160.2)
    assert out is not None
    assert out.kind == "state"


async def test_handlers_added_while_connected_are_subscribed(broker: Mosquitto, room: str):
    """`subscribe` after the connection is up routes matching messages to the handler."""
    async with (
        listen(broker.port, f"sessiond/{room}/#", "probe/#") as heard,
        bridge_on(broker.port, room) as r,
    ):
        await online(heard, r)
        got: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        r.bridge.subscribe(f"ext/{room}/+/status", lambda t, p: got.put_nowait((t, p)))
        # The writer subscribes before it publishes: once the probe is out, so is the filter.
        r.bridge.publish(f"probe/{room}", b"x", qos=1)
        await heard.wait_for(f"probe/{room}")
        await send(broker.port, f"ext/{room}/lamp/status", b"online")
        await send(broker.port, f"ext/{room}/lamp/other", b"ignored")
        await send(broker.port, f"ext/{room}/fan/status", b"offline")
        assert await asyncio.wait_for(got.get(), WAIT_S) == (f"ext/{room}/lamp/status", b"online")
        assert await asyncio.wait_for(got.get(), WAIT_S) == (f"ext/{room}/fan/status", b"offline")


async def test_documented_acl_keeps_commands_to_trusted_clients(tmp_path: Path):
    """The Mosquitto ACL in the module docstring: readers cannot command, front ends can."""
    doc = mqtt.__doc__ or ""
    acl_lines = [line.strip() for line in doc.splitlines() if line.startswith("    ")]
    assert "topic write sessiond/+/cmd/#" in acl_lines
    acl = tmp_path / "acl"
    acl.write_text("\n".join(acl_lines) + "\n", encoding="utf-8")
    users = {"sessiond-room-1": "d43m0n", "nurse-station": "n0rse", "viewer": "v13w"}
    passwords = password_file(tmp_path / "passwd", users)
    config = (f"password_file {passwords}", f"acl_file {acl}")
    with Mosquitto(tmp_path, allow_anonymous=False, extra_config=config) as broker:
        viewer = {"username": "viewer", "password": users["viewer"]}
        daemon = {"username": "sessiond-room-1", "password": users["sessiond-room-1"]}
        async with (
            listen(broker.port, "sessiond/room-1/#", **viewer) as heard,
            bridge_on(broker.port, "room-1", **daemon) as r,
        ):
            await online(heard, r)
            await heard.wait_for(r.topic("state"))  # readers see the room
            async with aiomqtt.Client(
                mosquitto.HOST, broker.port, username="viewer", password=users["viewer"]
            ) as client:
                await client.publish(r.topic("cmd/pause"), b'{"user": "viewer"}', qos=1)
            async with aiomqtt.Client(
                mosquitto.HOST,
                broker.port,
                username="nurse-station",
                password=users["nurse-station"],
            ) as client:
                await client.publish(r.topic("cmd/pause"), b'{"user": "nurse1"}', qos=1)
            # In broker order the viewer's command came first: it was dropped.
            assert await r.control.next_call() == (
                "pause_audio",
                {"user": "nurse1", "source": "mqtt"},
            )
