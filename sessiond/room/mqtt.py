"""The MQTT bridge (aiomqtt 2.x): the room's state, alarms, vitals and events out, commands in.

Topics under `<prefix>/<room>/` (DESIGN §7):

| topic | retained | QoS | payload |
|---|---|---|---|
| `availability` | yes (also the Will) | 1 | `online` / `offline` |
| `state` | yes | 1 | session, phase, minutes since dose, alarms, scene, music, links, infusion |
| `alarm` | yes | 1 | the active alarm list, most urgent first |
| `vitals` | no | 0 | latest values with quality, at most `vitals_max_rate_hz` |
| `event` | no | 1 | alarm transitions, nurse actions, infusion prompts, `error` for bad commands |
| `cmd/<action>` | never | 1 | commands (below) |

Commands (JSON objects; `user` is required and named in the record, `source` is `mqtt`):
`session/start` {route}, `session/end`, `dose` {reason?}, `infusion/start` {amount, unit
("mg" or "mg/kg"), planned_min, reason?}, `infusion/pause` {reason}, `infusion/resume`
{reason}, `infusion/stop` {amount, unit?, reason?}, `ack` {alarm}, `pause`, `scene` {scene:
name or null, pinned}, `volume` {volume: 0-100, pinned}, `note` {text}, `nibp/measure`.
A refused one (bad JSON, unknown action, bad field, retained, or refused by the session) gets
`{"type": "error", "command", "error"}` on `event` and changes nothing.

No patient name or identifier goes on MQTT: sessions are named by their random id, and the
free text of notes, dose overrides and infusion reasons stays in the record. A confirmed
critical BP while an infusion runs goes out on `event` as an `infusion_prompt` (the advice
and the readings that confirmed it; `active` false when it goes): advice for the nurse,
never a command to a pump.

**Security.** Whoever may publish to `<prefix>/<room>/cmd/#` can start and end sessions,
mark the dose and acknowledge alarms in the name of any `user`, so restrict it with the
broker's ACLs: only the daemon writes its room's topics, only trusted front ends write
`cmd/#`, everyone else reads. For Mosquitto (`acl_file`, with passwords per user):

    pattern read sessiond/#
    user sessiond-room-1
    topic readwrite sessiond/room-1/#
    topic readwrite homeassistant/#
    topic readwrite zigbee2mqtt/#
    user nurse-station
    topic write sessiond/+/cmd/#

(the lights' topics as their adapters need). Use TLS and a password whenever the broker is
not on loopback. Retained commands are refused (a stale retained command must never act on
a new session), and every command is validated before anything is changed.

**Never in the way of monitoring.** The bus consumer only folds events into `RoomStatus`
and marks what has to go out; a separate connection task drains that, so a dead or slow
broker never holds up the bus, the monitor or the alarms. While the broker is down the
status keeps being updated (state and alarm are republished on reconnect), vitals are
dropped, and alarm transitions and nurse actions wait in a bounded backlog
(`event_backlog`; beyond it the oldest are dropped and counted, since the record, not MQTT,
is the system of record). The connection is retried with exponential backoff and jitter,
each time with a new client (an aiomqtt 2.x client reused after a lost connection can take
a stale acknowledgement for a new connection). A frozen broker is noticed by the MQTT
keep-alive within about twice `keepalive_s` (sooner when an acknowledgement times out). On a
clean exit `offline` is published (retained) before disconnecting; an unclean one leaves
that to the broker through the Will. The bridge listens to its own `availability`: a Will
the broker publishes late (a connection attempt it took up only after a freeze) is answered
with `online` at once.

**Size.** The bridge connects with MQTT v5 and a CONNECT "Maximum Packet Size" of
`MAX_PACKET_BYTES`: the broker never sends it anything larger (it drops the message), so a
huge publish on `cmd/#` never reaches the daemon's memory; commands up to that size but over
`MAX_COMMAND_BYTES` are refused with an `error` event before they are decoded. The broker
itself should refuse huge publishes too (`message_size_limit`, see
`deploy/mosquitto/mosquitto.conf`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import socket
import ssl
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from sessiond import __version__
from sessiond.model import (
    AlarmTransition,
    DeviceStatus,
    DischargeReadiness,
    DoseUnit,
    InfusionPrompt,
    NurseAction,
    PhaseChanged,
    Reading,
    RoomChanged,
    Route,
    SessionStarted,
)
from sessiond.room.discovery import discovery_messages, status_topic

# `[mqtt]` is defined in `sessiond.room.settings`; importing it from here still works.
from sessiond.room.settings import MqttSettings as MqttSettings  # noqa: PLC0414, TC001
from sessiond.session.commands import (
    CommandRejected,
    Control,
    describe_invalid,
)
from sessiond.session.infusion import MAX_AMOUNT, MAX_PLANNED_MIN, MAX_REASON_CHARS
from sessiond.wire import alarm_json, event_json, public_action_json

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from sessiond.bus import Subscription
    from sessiond.model import Event
    from sessiond.room.lights import LightDriver
    from sessiond.status import RoomStatus

logger = logging.getLogger(__name__)

#: Commands are small JSON objects; anything bigger is refused unread.
MAX_COMMAND_BYTES = 16 * 1024
#: The largest MQTT packet the broker may send this client (MQTT v5 Maximum Packet Size):
#: a command over `MAX_COMMAND_BYTES` still arrives to be refused with an error, anything
#: much bigger is dropped by the broker and never read into memory.
MAX_PACKET_BYTES = 2 * MAX_COMMAND_BYTES
#: Commands running at once; more is a flood (refused with an error event).
MAX_COMMANDS_IN_FLIGHT = 16
#: Topics waiting for the connection in `publish` (lights, discovery): one entry each.
MAX_PENDING_TOPICS = 1024
#: A streaming device's values older than this (session s) are not shown as current vitals.
VITALS_STALE_S = 10.0
#: Longest a clean exit spends flushing queued messages and saying `offline` (s).
SHUTDOWN_FLUSH_S = 3.0
#: Set on the connection's socket: without TCP_NODELAY, Nagle's algorithm holds a small
#: alarm publish while anything sent before it is unacknowledged, and a QoS 0 `vitals`
#: message is acknowledged only by the broker's delayed ACK (up to ~40 ms on Linux).
SOCKET_OPTIONS = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)

# --- commands ----------------------------------------------------------------------------------

_User = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]


class _Command(BaseModel):
    # Strict: `"volume": "40"` or `"pinned": "yes"` is a mistake, not something to guess at.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    user: _User
    #: Echoed in an `error` event, so a caller can match it to its command.
    transaction: str | None = Field(default=None, max_length=64)


class _UserOnly(_Command):
    pass


class _Start(_Command):
    route: Route


class _Dose(_Command):
    #: Overrides a high `dose_gate`; stays in the record, never goes on MQTT.
    reason: str | None = Field(default=None, min_length=1, max_length=500)


_Amount = Annotated[float, Field(ge=0, le=max(MAX_AMOUNT.values()), allow_inf_nan=False)]
_Reason = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_REASON_CHARS)
]


class _InfusionStart(_Command):
    """The start is the dose: the plan, and `reason` over a high `dose_gate` (record only)."""

    amount: _Amount = Field(gt=0)
    unit: DoseUnit
    planned_min: float = Field(gt=0, le=MAX_PLANNED_MIN, allow_inf_nan=False)
    reason: str | None = Field(default=None, min_length=1, max_length=MAX_REASON_CHARS)


class _InfusionReason(_Command):
    reason: _Reason


class _InfusionStop(_Command):
    amount: _Amount
    unit: DoseUnit | None = None
    reason: str | None = Field(default=None, min_length=1, max_length=MAX_REASON_CHARS)


class _Ack(_Command):
    alarm: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")


class _Scene(_Command):
    scene: str | None = Field(max_length=64)
    pinned: bool = False


class _Volume(_Command):
    volume: int = Field(ge=0, le=100)
    pinned: bool = False


class _Note(_Command):
    text: str = Field(min_length=1, max_length=2000)


_COMMANDS: dict[str, type[_Command]] = {
    "session/start": _Start,
    "session/end": _UserOnly,
    "dose": _Dose,
    "infusion/start": _InfusionStart,
    "infusion/pause": _InfusionReason,
    "infusion/resume": _InfusionReason,
    "infusion/stop": _InfusionStop,
    "ack": _Ack,
    "pause": _UserOnly,
    "scene": _Scene,
    "volume": _Volume,
    "note": _Note,
    "nibp/measure": _UserOnly,
}
SOURCE = "mqtt"


def _transaction_of(payload: bytes) -> str | None:
    """The `transaction` of a command that failed validation, when one can be read."""
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    value = data.get("transaction") if isinstance(data, dict) else None
    return value[:64] if isinstance(value, str) else None


# --- the client --------------------------------------------------------------------------------


def client_id(settings: MqttSettings, room_id: str) -> str:
    return settings.client_id or f"sessiond-{room_id}"


def make_client(settings: MqttSettings, room_id: str) -> aiomqtt.Client:
    """An aiomqtt client for one connection (MQTT v5); must be made inside the running loop."""
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.MaximumPacketSize = MAX_PACKET_BYTES
    tls_params = None
    if settings.tls:
        tls_params = aiomqtt.TLSParameters(
            ca_certs=settings.ca_file,
            certfile=settings.cert_file,
            keyfile=settings.key_file,
            cert_reqs=ssl.CERT_REQUIRED,
        )
    return aiomqtt.Client(
        settings.host,
        settings.port,
        identifier=client_id(settings, room_id),
        username=settings.username,
        password=settings.password,
        will=aiomqtt.Will(
            f"{settings.prefix}/{room_id}/availability", "offline", qos=1, retain=True
        ),
        keepalive=settings.keepalive_s,
        timeout=settings.timeout_s,
        tls_params=tls_params,
        tls_insecure=settings.tls_insecure if settings.tls else None,
        protocol=aiomqtt.ProtocolVersion.V5,
        properties=properties,
        socket_options=SOCKET_OPTIONS,
    )


def _discard(client: aiomqtt.Client) -> None:
    """Release what a finished client still holds, on the loop's own thread.

    aiomqtt 2.x leaves the socket of a failed connection open (with its reader registered)
    and its futures' exceptions unseen: closed here, and seen, so that no callback or
    "exception never retrieved" turns up later on a recycled file descriptor.
    """
    paho = client._client  # noqa: SLF001 - aiomqtt 2.x is pinned; it has no public close
    paho._reset_sockets()  # noqa: SLF001
    for future in (client._connected, client._disconnected):  # noqa: SLF001
        if future.done() and not future.cancelled():
            future.exception()


def backoff_delay(
    attempt: int, *, min_s: float, max_s: float, rand: Callable[[], float] = random.random
) -> float:
    """Exponential backoff with equal jitter: half the step fixed, half random."""
    step = min(max_s, min_s * 2.0 ** min(attempt, 32))
    return step / 2 + rand() * step / 2


# --- payloads ----------------------------------------------------------------------------------


def _alarm_list(status: RoomStatus) -> list[dict[str, Any]]:
    alarms = sorted(status.alarms.values(), key=lambda a: (-a.priority, a.t, a.alarm_id))
    return [{**alarm_json(a), "acknowledged": a.alarm_id in status.acknowledged} for a in alarms]


def vitals_json(readings: Mapping[str, Reading], now: float) -> dict[str, Any]:
    """The latest values with their quality: oximetry from the newest streaming reading
    (none once it is `VITALS_STALE_S` old), BP from the newest BP reading, and per device."""
    stream = [r for r in readings.values() if r.sys is None and r.dia is None]
    bp = [r for r in readings.values() if r.sys is not None or r.dia is not None]
    latest = max(stream, key=lambda r: r.t, default=None)
    if latest is not None and now - latest.t > VITALS_STALE_S:
        latest = None
    newest_bp = max(bp, key=lambda r: r.t, default=None)
    return {
        "t": round(now, 3),
        "spo2": None if latest is None else latest.spo2,
        "pr": None if latest is None else latest.pr,
        "pi": None if latest is None else latest.pi,
        "flags": [] if latest is None else latest.flags.names(),
        "sys": None if newest_bp is None else newest_bp.sys,
        "dia": None if newest_bp is None else newest_bp.dia,
        "map": None if newest_bp is None else newest_bp.map,
        "bp_age_s": None if newest_bp is None else round(now - newest_bp.t, 1),
        "devices": {
            name: {
                **{k: v for k, v in r.values().items() if v is not None},
                "flags": r.flags.names(),
                "age_s": round(now - r.t, 1),
            }
            for name, r in readings.items()
        },
    }


def _cancel_requested() -> bool:
    """Whether this task was asked to stop, even if the request was lost on the way.

    Python 3.11's `asyncio.wait_for` (which aiomqtt uses for acknowledgements) returns the
    result instead of raising when the awaited call finished in the same turn as the
    cancellation; loops check this so that they still stop.
    """
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _raise_if_cancelled() -> None:
    if _cancel_requested():
        raise asyncio.CancelledError


def _json(data: object) -> str:
    return json.dumps(data, separators=(",", ":"))


@dataclass(slots=True)
class _Out:
    kind: Literal["event", "alarm", "state", "vitals", "topic", "subscribe"]
    topic: str
    payload: str | bytes = b""
    qos: int = 1
    retain: bool = False


class MqttBridge:
    """Publishes one room's status to MQTT and turns MQTT commands into control calls.

    Give it its own bus subscription and its own `RoomStatus` (it folds every event into it).
    `run()` until cancelled. Other parts reach the broker through `publish` (never blocks)
    and `subscribe` (handlers for incoming topics, e.g. the lights' availability).
    """

    def __init__(
        self,
        *,
        settings: MqttSettings,
        room_id: str,
        subscription: Subscription,
        status: RoomStatus,
        control: Control,
        now: Callable[[], float],
        sw_version: str = __version__,
    ) -> None:
        self.settings = settings
        self.room_id = room_id
        self.base = f"{settings.prefix}/{room_id}"
        self.availability_topic = f"{self.base}/availability"
        self.state_topic = f"{self.base}/state"
        self.alarm_topic = f"{self.base}/alarm"
        self.vitals_topic = f"{self.base}/vitals"
        self.event_topic = f"{self.base}/event"
        self.cmd_prefix = f"{self.base}/cmd/"
        self.ha_status_topic = status_topic(settings.discovery_prefix)
        self._sub = subscription
        self._status = status
        self._control = control
        self._now = now
        self._sw_version = sw_version

        self._events: deque[_Out] = deque()
        self._pending: dict[str, _Out] = {}
        self._new_filters: list[str] = []
        self._alarm_dirty = True
        self._state_dirty = True
        self._vitals_dirty = False
        self._last_state_at = -math.inf
        self._last_vitals_at = -math.inf
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._handlers: list[tuple[aiomqtt.Wildcard, Callable[[str, bytes], None]]] = []
        self._sections: dict[str, Callable[[], object]] = {}
        self._room: RoomChanged | None = None
        self._discharge: DischargeReadiness | None = None
        self._commands: set[asyncio.Task[None]] = set()
        self._rediscover: asyncio.TimerHandle | None = None
        #: True while connected to the broker.
        self.connected = False
        #: Successful connections so far (1 after the first, +1 per reconnect).
        self.connections = 0
        #: Alarm transitions and nurse actions dropped because the backlog was full.
        self.events_dropped = 0
        self._said_down = False

    # --- what other parts use ----------------------------------------------------------------

    def publish(
        self, topic: str, payload: str | bytes, *, qos: int = 0, retain: bool = False
    ) -> None:
        """Queue a message; only the newest per topic waits while the broker is down."""
        if topic not in self._pending and len(self._pending) >= MAX_PENDING_TOPICS:
            logger.warning("mqtt: %d topics waiting, %s dropped", len(self._pending), topic)
            return
        self._pending.pop(topic, None)  # re-inserted last: the newest goes out last
        self._pending[topic] = _Out("topic", topic, payload, qos, retain)
        self._wake.set()

    def subscribe(self, topic_filter: str, handler: Callable[[str, bytes], None]) -> None:
        """Route messages on `topic_filter` to `handler(topic, payload)` (on every connect)."""
        self._handlers.append((aiomqtt.Wildcard(topic_filter), handler))
        if self.connected:
            self._new_filters.append(topic_filter)
            self._wake.set()

    def add_state(self, key: str, provider: Callable[[], object]) -> None:
        """Add `key: provider()` to every `state` message (call `state_changed` on changes)."""
        self._sections[key] = provider
        self.state_changed()

    def state_changed(self) -> None:
        """Something in an added state section changed: republish `state` soon."""
        self._state_dirty = True
        self._wake.set()

    def attach_lights(self, lights: LightDriver) -> None:
        """Route the lights' availability topics to them and show their availability."""
        for topic in lights.availability_topics():
            self.subscribe(topic, lights.handle_message)

        def words() -> dict[str, str]:
            names = {True: "online", False: "offline", None: "unknown"}
            return {name: names[up] for name, up in lights.availability().items()}

        self.add_state("lights", words)
        lights.on_change = self.state_changed

    # --- running -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, publish and serve commands until cancelled or the bus closes."""
        consumer = asyncio.create_task(self._consume(), name=f"sessiond.mqtt[{self.room_id}].bus")
        attempt = 0
        try:
            while not self._closing.is_set():
                before = self.connections
                client = make_client(self.settings, self.room_id)
                try:
                    await self._connection(client)
                except aiomqtt.MqttError as exc:
                    # Said once per outage: when it was up until now, or never came up.
                    self._went_down(exc, first=self.connections != before or not self._said_down)
                finally:
                    _discard(client)
                if self._closing.is_set():
                    break
                _raise_if_cancelled()
                attempt = 0 if self.connections != before else attempt + 1
                delay = backoff_delay(
                    attempt,
                    min_s=self.settings.reconnect_min_s,
                    max_s=self.settings.reconnect_max_s,
                )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._closing.wait()
        finally:
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)
            if self._rediscover is not None:
                self._rediscover.cancel()
            await self._finish_commands()

    async def _connection(self, client: aiomqtt.Client) -> None:
        """One connection, from connect to loss (`MqttError`), close or cancellation.

        A lost connection is left without a goodbye (the caller discards the client): a
        broker that stopped answering would only make the disconnect wait for its timeout.
        """
        entering = asyncio.ensure_future(client.__aenter__())
        try:
            await asyncio.shield(entering)
        except asyncio.CancelledError:
            # Let a half-made connection finish so that it is closed, not leaked.
            await asyncio.wait([entering], timeout=self.settings.timeout_s)
            if entering.done() and not entering.cancelled() and entering.exception() is None:
                await self._say_offline(client)
                await self._disconnect(client)
            raise
        self.connected = True
        self.connections += 1
        logger.info("mqtt: connected to %s:%d", self.settings.host, self.settings.port)
        try:
            await self._announce(client)
            _raise_if_cancelled()
            await self._serve(client)
            await self._say_offline(client)  # the bus closed: a clean exit
            await self._disconnect(client)
        except asyncio.CancelledError:
            await self._say_offline(client)
            await self._disconnect(client)
            raise
        finally:
            self.connected = False
            self._vitals_dirty = False

    async def _disconnect(self, client: aiomqtt.Client) -> None:
        """A clean MQTT disconnect (the broker then drops the Will: `offline` was said)."""
        try:
            await client.__aexit__(None, None, None)
        except aiomqtt.MqttError as exc:
            logger.debug("mqtt: no clean disconnect: %s", exc)

    async def _announce(self, client: aiomqtt.Client) -> None:
        # Subscribe before saying online, so a command sent on `online` is never missed.
        filters = [self.cmd_prefix + "#", self.ha_status_topic, self.availability_topic]
        filters += [str(w.value) for w, _ in self._handlers]
        self._new_filters.clear()
        await client.subscribe([(f, 1) for f in dict.fromkeys(filters)])
        await client.publish(self.availability_topic, "online", qos=1, retain=True)
        self._republish()

    def _republish(self) -> None:
        """Everything retained again (after a connect, or Home Assistant restarting)."""
        if self.settings.discovery:
            for message in discovery_messages(
                prefix=self.settings.prefix,
                room_id=self.room_id,
                sw_version=self._sw_version,
                discovery_prefix=self.settings.discovery_prefix,
            ):
                self.publish(message.topic, message.payload, qos=1, retain=True)
        self._alarm_dirty = True
        self._state_dirty = True
        self._last_state_at = -math.inf
        self._wake.set()

    async def _serve(self, client: aiomqtt.Client) -> None:
        """Read and write until the connection fails (raises) or the bus closes (returns)."""
        name = f"sessiond.mqtt[{self.room_id}]"
        tasks = [
            asyncio.create_task(self._read(client), name=f"{name}.read"),
            asyncio.create_task(self._drain(client), name=f"{name}.write"),
            asyncio.create_task(self._closing.wait(), name=f"{name}.closing"),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks[:2]:
            if task in done and not task.cancelled() and (exc := task.exception()) is not None:
                raise exc

    async def _say_offline(self, client: aiomqtt.Client) -> None:
        """Flush what is queued and publish `offline` (retained) before a clean disconnect."""
        while (event := self._sub.get_nowait()) is not None:
            self._on_event(event)
        # Far in the future: every throttle has expired, so everything queued is due now.
        far = asyncio.get_running_loop().time() + 1e6
        try:
            async with asyncio.timeout(SHUTDOWN_FLUSH_S):
                while (out := self._next(far)[0]) is not None:
                    if out.kind != "vitals":
                        await self._send(client, out)
                await client.publish(self.availability_topic, "offline", qos=1, retain=True)
        except (aiomqtt.MqttError, TimeoutError) as exc:
            logger.warning("mqtt: could not say offline before closing: %s", str(exc) or "timeout")

    def _went_down(self, exc: aiomqtt.MqttError, *, first: bool) -> None:
        # Logged as text: a record holding the exception would keep its sockets alive.
        reason = str(exc)
        if first:
            self._said_down = True
            logger.warning(
                "mqtt: broker %s:%d unavailable (%s); retrying with backoff",
                self.settings.host,
                self.settings.port,
                reason,
            )
        else:
            logger.debug("mqtt: still unavailable: %s", reason)

    async def _finish_commands(self) -> None:
        if not self._commands:
            return
        # A command half done (a dose being recorded) gets a moment to finish.
        _, pending = await asyncio.wait(self._commands, timeout=2.0)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    # --- the bus -------------------------------------------------------------------------------

    async def _consume(self) -> None:
        async for event in self._sub:
            self._on_event(event)
        self._closing.set()

    def _on_event(self, event: Event) -> None:
        """Fold one event and mark what must go out; never blocks, never raises."""
        try:
            self._status.apply(event)
            match event:
                case Reading():
                    # Vitals are live only: with no broker they are simply not sent.
                    self._vitals_dirty = self.connected
                case AlarmTransition():
                    self._queue_event(event_json(event))
                    self._alarm_dirty = self._state_dirty = True
                case NurseAction():
                    self._queue_event(public_action_json(event))
                    # An ack changes the alarm list's `acknowledged`; a dose the state.
                    self._alarm_dirty = self._state_dirty = True
                case InfusionPrompt():
                    self._queue_event(event_json(event))
                    self._state_dirty = True
                case RoomChanged():
                    self._room = event
                    self._state_dirty = True
                case DischargeReadiness():
                    self._discharge = event
                    self._state_dirty = True
                case SessionStarted() | PhaseChanged() | DeviceStatus():
                    self._alarm_dirty = self._state_dirty = True
                case _:
                    return
        except Exception:
            logger.exception("mqtt: cannot fold %r", event)
        self._wake.set()

    def _queue_event(self, data: dict[str, Any]) -> None:
        if self.settings.event_backlog == 0 and not self.connected:
            self.events_dropped += 1
            return
        if len(self._events) >= max(1, self.settings.event_backlog):
            self._events.popleft()
            self.events_dropped += 1
            if self.events_dropped in (1, 100) or self.events_dropped % 1000 == 0:
                logger.warning(
                    "mqtt: event backlog full, %d events dropped (they are in the record)",
                    self.events_dropped,
                )
        self._events.append(_Out("event", self.event_topic, _json(data), qos=1))
        self._wake.set()

    # --- the connection's writer ---------------------------------------------------------------

    async def _drain(self, client: aiomqtt.Client) -> None:
        loop = asyncio.get_running_loop()
        while not _cancel_requested():
            out, wait_s = self._next(loop.time())
            if out is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait_s):
                        await self._wake.wait()
                continue
            await self._send(client, out)

    async def _send(self, client: aiomqtt.Client, out: _Out) -> None:
        try:
            if out.kind == "subscribe":
                await client.subscribe(out.topic, qos=1)
            else:
                await client.publish(out.topic, out.payload, qos=out.qos, retain=out.retain)
        except BaseException:
            self._requeue(out)
            raise

    def _requeue(self, out: _Out) -> None:
        match out.kind:
            case "event":
                self._events.appendleft(out)
            case "alarm":
                self._alarm_dirty = True
            case "state":
                self._state_dirty = True
            case "topic":
                if out.topic not in self._pending:
                    self._pending[out.topic] = out
            case "subscribe" | "vitals":
                pass  # all filters are subscribed on connect; vitals are live only

    def _next(self, now: float) -> tuple[_Out | None, float | None]:
        """The next message to send, or None and how long until one may be due."""
        out = self._next_urgent()
        return (out, None) if out is not None else self._next_throttled(now)

    def _next_urgent(self) -> _Out | None:
        # Alarm transitions and the alarm list first, then commands to lights and discovery.
        if self._new_filters:
            return _Out("subscribe", self._new_filters.pop(0))
        if self._events:
            return self._events.popleft()
        if self._alarm_dirty:
            self._alarm_dirty = False
            payload = _json(_alarm_list(self._status))
            return _Out("alarm", self.alarm_topic, payload, qos=1, retain=True)
        if self._pending:
            return self._pending.pop(next(iter(self._pending)))
        return None

    def _next_throttled(self, now: float) -> tuple[_Out | None, float | None]:
        waits: list[float] = []
        if self._status.session is not None and self._status.phase is not None:
            refresh_at = self._last_state_at + self.settings.state_refresh_s
            if now >= refresh_at:
                self._state_dirty = True
            else:
                waits.append(refresh_at - now)
        if self._state_dirty:
            due = self._last_state_at + self.settings.state_min_interval_s
            if now >= due:
                self._state_dirty = False
                self._last_state_at = now
                payload = _json(self.state())
                return _Out("state", self.state_topic, payload, qos=1, retain=True), None
            waits.append(due - now)
        if self._vitals_dirty:
            due = self._last_vitals_at + 1.0 / self.settings.vitals_max_rate_hz
            if now >= due:
                self._vitals_dirty = False
                self._last_vitals_at = now
                payload = _json(vitals_json(self._status.readings, self._now()))
                return _Out("vitals", self.vitals_topic, payload, qos=0), None
            waits.append(due - now)
        return None, (min(waits) if waits else None)

    def state(self) -> dict[str, Any]:
        """The retained `state` payload now."""
        now = self._now()
        status = self._status
        session: dict[str, Any] | None = None
        if status.session is not None:
            dose = status.session.dose_t
            session = {
                "id": status.session.session_id,
                "route": status.session.route.value,
                "minutes_since_start": round((now - status.session.started_t) / 60, 1),
                "minutes_since_dose": None if dose is None else round((now - dose) / 60, 1),
            }
        room = self._room
        out: dict[str, Any] = {
            "room": self.room_id,
            "t": round(now, 3),
            "version": self._sw_version,
            "session": session,
            "phase": None if status.phase is None else status.phase.value,
            "alarms": _alarm_list(status),
            "scene": None
            if room is None
            else {
                "name": room.scene,
                "light_pct": room.light_pct,
                "colour_temp_k": room.colour_temp_k,
                "override": room.override,
                "pinned": room.pinned,
                "source": room.source,
            },
            "music": None
            if room is None
            else {"playlist": room.playlist, "volume_pct": room.volume_pct, "ducked": room.ducked},
            "devices": {
                name: {"connected": d.connected, "detail": d.detail}
                for name, d in status.devices.items()
            },
            "discharge": None
            if self._discharge is None
            else {"ready": self._discharge.ready, "unmet": list(self._discharge.unmet)},
            "infusion": status.infusion_json(now),
        }
        for key, provider in self._sections.items():
            try:
                out[key] = provider()
            except Exception:
                logger.exception("mqtt: state section %s failed", key)
        return out

    # --- the connection's reader ---------------------------------------------------------------

    async def _read(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            try:
                self._on_message(message)
            except Exception:
                logger.exception("mqtt: cannot handle a message on %s", message.topic)

    def _on_message(self, message: aiomqtt.Message) -> None:
        topic = message.topic.value
        payload = message.payload if isinstance(message.payload, bytes) else b""
        if topic.startswith(self.cmd_prefix):
            self._on_command(topic.removeprefix(self.cmd_prefix), payload, retained=message.retain)
            return
        if topic == self.availability_topic:
            if payload != b"online" and self.connected and not self._closing.is_set():
                # A Will published late (a stale connection the broker took up after a
                # freeze) while this one is up: say `online` again.
                logger.info("mqtt: availability said %r while connected; online again", payload)
                self.publish(self.availability_topic, "online", qos=1, retain=True)
            return
        if topic == self.ha_status_topic:
            # A retained `online` is Home Assistant's past: discovery just went out anyway.
            if payload.strip() == b"online" and not message.retain:
                self._schedule_rediscovery()
            return
        for wildcard, handler in self._handlers:
            if message.topic.matches(wildcard):
                handler(topic, payload)

    def _schedule_rediscovery(self) -> None:
        if self._rediscover is not None:
            self._rediscover.cancel()
        # HA asks for a random delay, so a clinic's daemons do not all answer at once.
        delay = random.uniform(0, self.settings.discovery_delay_max_s)  # noqa: S311 - not a secret
        self._rediscover = asyncio.get_running_loop().call_later(delay, self._republish)

    def _on_command(self, action: str, payload: bytes, *, retained: bool) -> None:
        shown = action[:64]
        if retained:
            # Stale: it was sent for some earlier session, maybe before a restart.
            self._command_error(shown, "retained commands are ignored", _transaction_of(payload))
            return
        model = _COMMANDS.get(action)
        if model is None:
            self._command_error(shown, "unknown command", None)
            return
        if len(payload) > MAX_COMMAND_BYTES:
            self._command_error(shown, f"payload: larger than {MAX_COMMAND_BYTES} bytes", None)
            return
        try:
            command = model.model_validate_json(payload)
        except ValidationError as exc:
            self._command_error(
                shown, describe_invalid(exc, whole="payload"), _transaction_of(payload)
            )
            return
        if len(self._commands) >= MAX_COMMANDS_IN_FLIGHT:
            self._command_error(shown, "too many commands at once", command.transaction)
            return
        task = asyncio.create_task(
            self._run_command(action, command), name=f"sessiond.mqtt[{self.room_id}].cmd"
        )
        self._commands.add(task)
        task.add_done_callback(self._commands.discard)

    async def _run_command(self, action: str, command: _Command) -> None:
        try:
            await self._execute(action, command)
        except CommandRejected as exc:
            self._command_error(action, exc.reason, command.transaction)
        except Exception:
            logger.exception("mqtt: command %s failed", action)
            self._command_error(action, "internal error", command.transaction)
        else:
            logger.info("mqtt: %s by %r", action, command.user)

    async def _execute(self, action: str, command: _Command) -> None:
        control = self._control
        user = command.user
        match command:
            case _Start():
                await control.start_session(route=command.route, user=user, source=SOURCE)
            case _Dose():
                await control.mark_dose(user=user, source=SOURCE, reason=command.reason)
            case _InfusionStart() | _InfusionReason() | _InfusionStop():
                await self._execute_infusion(action, command)
            case _Ack():
                await control.acknowledge(alarm_id=command.alarm, user=user, source=SOURCE)
            case _Scene():
                await control.set_scene(
                    scene=command.scene, pinned=command.pinned, user=user, source=SOURCE
                )
            case _Volume():
                await control.set_volume(
                    volume_pct=command.volume, pinned=command.pinned, user=user, source=SOURCE
                )
            case _Note():
                await control.add_note(text=command.text, user=user, source=SOURCE)
            case _UserOnly() if action == "session/end":
                await control.end_session(user=user, source=SOURCE)
            case _UserOnly() if action == "pause":
                await control.pause_audio(user=user, source=SOURCE)
            case _UserOnly() if action == "nibp/measure":
                await control.measure_nibp(user=user, source=SOURCE)
            case _:
                msg = f"no handler for {action}"
                raise AssertionError(msg)

    async def _execute_infusion(
        self, action: str, command: _InfusionStart | _InfusionReason | _InfusionStop
    ) -> None:
        control, user = self._control, command.user
        match command:
            case _InfusionStart():
                await control.start_infusion(
                    amount=command.amount,
                    unit=command.unit,
                    planned_min=command.planned_min,
                    user=user,
                    source=SOURCE,
                    reason=command.reason,
                )
            case _InfusionReason() if action == "infusion/pause":
                await control.pause_infusion(reason=command.reason, user=user, source=SOURCE)
            case _InfusionReason():
                await control.resume_infusion(reason=command.reason, user=user, source=SOURCE)
            case _InfusionStop():
                await control.stop_infusion(
                    amount=command.amount,
                    unit=command.unit,
                    user=user,
                    source=SOURCE,
                    reason=command.reason,
                )

    def _command_error(self, action: str, error: str, transaction: str | None) -> None:
        data: dict[str, Any] = {
            "t": round(self._now(), 3),
            "type": "error",
            "command": action,
            "error": error,
        }
        if transaction is not None:
            data["transaction"] = transaction
        logger.info("mqtt: command %s refused: %s", action, error)
        self._queue_event(data)
