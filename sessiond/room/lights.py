"""Room lights over MQTT: adapters per ecosystem, and fades stepped by the daemon.

Adapters are pure payload builders (one per ecosystem, DESIGN §7):

- Zigbee2MQTT: `<base>/<friendly name or group>/set` JSON, brightness 0-254, `color_temp`
  in mireds clamped to the device's range, `transition` in seconds.
- Tasmota: `cmnd/<topic>/Backlog` (`SetOption117 1; Fade 1; Speed n; CT m; Dimmer p`), CT in
  Tasmota's 153-500 mired range, and a native fade of at most 20 s (`Speed 40`).
- Home Assistant JSON light schema: `{"state", "brightness", "color_temp", "transition"}` on a
  configured command topic (`color_temp` in kelvin when the light says `color_temp_kelvin`).

Each adapter also names the topics that tell whether its light is reachable and parses them.

`LightDriver` sends targets to every configured light through a non-blocking publish function
(the MQTT bridge's queue). Native transitions are unreliable beyond a few seconds on many
bulbs (and Tasmota stops at 20 s), so a fade longer than a light's `max_native_transition_s`
is stepped by the daemon: every `step_s` the next intermediate target goes out with a short
native transition (level linear, colour temperature linear in mireds). A new target cancels a
running fade and starts from where it is now, so the alarm override goes out at once.
Commands are never retained (a retained command replays on the light's next reconnect).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from sessiond.room.settings import KELVIN_MAX, KELVIN_MIN

# `[lights]` is defined in `sessiond.room.settings`; importing it from here still works.
from sessiond.room.settings import HomeAssistantLight as HomeAssistantLight  # noqa: PLC0414
from sessiond.room.settings import LightsConfig as LightsConfig  # noqa: PLC0414
from sessiond.room.settings import TasmotaLight as TasmotaLight  # noqa: PLC0414
from sessiond.room.settings import Zigbee2MqttLight as Zigbee2MqttLight  # noqa: PLC0414

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

logger = logging.getLogger(__name__)

MIRED_KELVIN = 1_000_000
#: Tasmota's CT command range (mireds).
TASMOTA_CT_MIN = 153
TASMOTA_CT_MAX = 500
FULL_PCT = 100.0
#: Light commands are QoS 1 (delivered once the broker has them) and never retained.
COMMAND_QOS = 1


def kelvin_to_mireds(kelvin: float) -> float:
    return MIRED_KELVIN / kelvin


# --- targets and adapters --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LightTarget:
    """Where the room's lights should go: level (0 = off), colour temperature, fade time."""

    level_pct: float
    colour_temp_k: int
    transition_s: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.level_pct <= FULL_PCT:
            msg = f"level_pct must be 0-100, not {self.level_pct}"
            raise ValueError(msg)
        if not KELVIN_MIN <= self.colour_temp_k <= KELVIN_MAX:
            msg = f"colour_temp_k must be {KELVIN_MIN}-{KELVIN_MAX} K, not {self.colour_temp_k}"
            raise ValueError(msg)
        if not (self.transition_s >= 0.0 and math.isfinite(self.transition_s)):
            msg = f"transition_s must be >= 0, not {self.transition_s}"
            raise ValueError(msg)


@dataclass(frozen=True, slots=True, kw_only=True)
class LightCommand:
    """One native command: `on` False turns the light off (level and colour then ignored)."""

    on: bool
    level_pct: float
    mireds: float
    transition_s: float = 0.0


def _json(data: dict[str, object]) -> str:
    return json.dumps(data, separators=(",", ":"))


def _transition(seconds: float) -> float:
    return round(seconds, 1)


def _parse_online(payload: bytes) -> bool | None:
    """`online`/`offline` in any case, or JSON `{"state": "online"}` (Zigbee2MQTT 2.x)."""
    text = payload.decode("utf-8", errors="replace").strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            return None
        text = str(data.get("state", "")) if isinstance(data, dict) else ""
    match text.lower():
        case "online":
            return True
        case "offline":
            return False
        case _:
            return None


class LightAdapter(Protocol):
    """Pure translation between `LightCommand`s and one ecosystem's MQTT topics."""

    @property
    def name(self) -> str: ...

    def command(self, cmd: LightCommand) -> tuple[str, str]:
        """The topic and payload that carry `cmd`."""
        ...

    def availability_topics(self) -> list[str]:
        """Topics that say whether the light is reachable."""
        ...

    def parse_availability(self, topic: str, payload: bytes) -> bool | None:
        """True online, False offline, None not understood."""
        ...


class Zigbee2MqttAdapter:
    def __init__(self, config: Zigbee2MqttLight) -> None:
        self.config = config
        self.set_topic = f"{config.base_topic}/{config.name}/set"
        self.availability_topic = f"{config.base_topic}/{config.name}/availability"
        self.bridge_state_topic = f"{config.base_topic}/bridge/state"

    @property
    def name(self) -> str:
        return self.config.name

    def command(self, cmd: LightCommand) -> tuple[str, str]:
        payload: dict[str, object]
        if not cmd.on:
            payload = {"state": "OFF"}
        else:
            mireds = min(max(round(cmd.mireds), self.config.min_mireds), self.config.max_mireds)
            payload = {
                "state": "ON",
                # 0 would be off on some bulbs: an "on" light gets at least 1.
                "brightness": max(1, round(cmd.level_pct * 254 / 100)),
                "color_temp": mireds,
            }
        if cmd.transition_s > 0:
            payload["transition"] = _transition(cmd.transition_s)
        return self.set_topic, _json(payload)

    def availability_topics(self) -> list[str]:
        return [self.availability_topic, self.bridge_state_topic]

    def parse_availability(self, topic: str, payload: bytes) -> bool | None:
        if topic in (self.availability_topic, self.bridge_state_topic):
            return _parse_online(payload)
        return None


class TasmotaAdapter:
    def __init__(self, config: TasmotaLight) -> None:
        self.config = config
        self.backlog_topic = f"cmnd/{config.name}/Backlog"
        self.lwt_topic = f"tele/{config.name}/LWT"

    @property
    def name(self) -> str:
        return self.config.name

    def command(self, cmd: LightCommand) -> tuple[str, str]:
        # Everything goes through Backlog, so one topic carries the latest command.
        if not cmd.on:
            return self.backlog_topic, "Power OFF"
        low = max(TASMOTA_CT_MIN, self.config.min_mireds)
        high = min(TASMOTA_CT_MAX, self.config.max_mireds)
        ct = min(max(round(cmd.mireds), low), high)
        dimmer = max(1, min(100, round(cmd.level_pct)))
        if cmd.transition_s > 0:
            # SetOption117 1: Speed is a fixed duration (in 0.5 s) rather than a slew rate.
            speed = min(40, max(1, math.ceil(cmd.transition_s * 2)))
            fade = f"SetOption117 1; Fade 1; Speed {speed}"
        else:
            fade = "Fade 0"
        return self.backlog_topic, f"{fade}; CT {ct}; Dimmer {dimmer}"

    def availability_topics(self) -> list[str]:
        return [self.lwt_topic]

    def parse_availability(self, topic: str, payload: bytes) -> bool | None:
        if topic != self.lwt_topic:
            return None
        return _parse_online(payload)


class HomeAssistantAdapter:
    def __init__(self, config: HomeAssistantLight) -> None:
        self.config = config

    @property
    def name(self) -> str:
        return self.config.name

    def command(self, cmd: LightCommand) -> tuple[str, str]:
        payload: dict[str, object]
        if not cmd.on:
            payload = {"state": "OFF"}
        else:
            mireds = min(max(cmd.mireds, self.config.min_mireds), self.config.max_mireds)
            scale = self.config.brightness_scale
            payload = {
                "state": "ON",
                "brightness": max(1, round(cmd.level_pct * scale / 100)),
                "color_temp": (
                    round(MIRED_KELVIN / mireds) if self.config.color_temp_kelvin else round(mireds)
                ),
            }
        if cmd.transition_s > 0:
            payload["transition"] = _transition(cmd.transition_s)
        return self.config.command_topic, _json(payload)

    def availability_topics(self) -> list[str]:
        topic = self.config.availability_topic
        return [] if topic is None else [topic]

    def parse_availability(self, topic: str, payload: bytes) -> bool | None:
        if topic != self.config.availability_topic:
            return None
        text = payload.decode("utf-8", errors="replace").strip()
        if text == self.config.payload_available:
            return True
        if text == self.config.payload_not_available:
            return False
        return _parse_online(payload)


def adapter_for(config: Zigbee2MqttLight | TasmotaLight | HomeAssistantLight) -> LightAdapter:
    match config:
        case Zigbee2MqttLight():
            return Zigbee2MqttAdapter(config)
        case TasmotaLight():
            return TasmotaAdapter(config)
        case HomeAssistantLight():
            return HomeAssistantAdapter(config)


# --- fades -----------------------------------------------------------------------------------


class Publish(Protocol):
    """Hand a message to the MQTT connection; never blocks (the bridge queues it)."""

    def __call__(self, topic: str, payload: str | bytes, *, qos: int, retain: bool) -> None: ...


class FadeClock(Protocol):
    """Session time for fades: `now()` and `sleep()` in session seconds."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class _LoopTime:
    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


@dataclass(frozen=True, slots=True)
class LightPoint:
    """A light's level (%) and colour temperature (mireds), fixed or on its way."""

    level_pct: float
    mireds: float


@dataclass(frozen=True, slots=True)
class FadeStep:
    """One command of a fade and when to send it."""

    at_s: float  # offset from the fade's start (session s)
    cmd: LightCommand


@dataclass(frozen=True, slots=True)
class _Fade:
    start: LightPoint
    end: LightPoint
    t0: float
    duration_s: float

    def at(self, t: float) -> LightPoint:
        if self.duration_s <= 0:
            return self.end
        f = min(1.0, max(0.0, (t - self.t0) / self.duration_s))
        return LightPoint(
            self.start.level_pct + (self.end.level_pct - self.start.level_pct) * f,
            self.start.mireds + (self.end.mireds - self.start.mireds) * f,
        )


def plan_fade(
    start: LightPoint | None,
    end: LightPoint,
    duration_s: float,
    *,
    step_s: float,
    max_native_s: float,
) -> list[FadeStep]:
    """The commands of one fade, with their offsets; the last one leaves the light at `end`.

    Unknown `start`: one command, with the native transition capped at `max_native_s`.
    A fade to 0 % from a lit light runs on at minimum brightness and then turns off (some
    bulbs ignore the transition of an OFF command).
    """
    off = end.level_pct <= 0
    if duration_s <= 0:
        return [FadeStep(0.0, LightCommand(on=not off, level_pct=end.level_pct, mireds=end.mireds))]
    if off and (start is None or start.level_pct <= 0):
        # Off already, or unknown: dimming up to the minimum first could flash a dark room.
        native = 0.0 if start is not None else min(duration_s, max_native_s)
        return [
            FadeStep(
                0.0, LightCommand(on=False, level_pct=0, mireds=end.mireds, transition_s=native)
            )
        ]
    if start is None or duration_s <= max_native_s:
        native = min(duration_s, max_native_s)
        steps = [
            FadeStep(
                0.0,
                LightCommand(
                    on=True, level_pct=end.level_pct, mireds=end.mireds, transition_s=native
                ),
            )
        ]
    else:
        step = min(step_s, max_native_s) if max_native_s > 0 else step_s
        count = max(1, math.ceil(duration_s / step - 1e-9))
        steps = []
        for k in range(count):
            t_from = k * step
            t_to = min(duration_s, (k + 1) * step)
            f = t_to / duration_s
            point = LightPoint(
                start.level_pct + (end.level_pct - start.level_pct) * f,
                start.mireds + (end.mireds - start.mireds) * f,
            )
            # Native 0 s steps when a light cannot fade: the daemon's steps are the fade.
            native = min(t_to - t_from, max_native_s)
            cmd = LightCommand(
                on=True, level_pct=point.level_pct, mireds=point.mireds, transition_s=native
            )
            steps.append(FadeStep(t_from, cmd))
    if off:
        end_s = steps[-1].at_s + steps[-1].cmd.transition_s
        steps.append(FadeStep(end_s, LightCommand(on=False, level_pct=0.0, mireds=end.mireds)))
    return steps


class _Channel:
    """One light: its adapter, where its fade stands, and its availability."""

    def __init__(self, config: Zigbee2MqttLight | TasmotaLight | HomeAssistantLight) -> None:
        self.config = config
        self.adapter = adapter_for(config)
        self.fade: _Fade | None = None
        self.task: asyncio.Task[None] | None = None
        self.available: dict[str, bool | None] = dict.fromkeys(self.adapter.availability_topics())

    @property
    def name(self) -> str:
        return self.config.name

    def position(self, now: float) -> LightPoint | None:
        return None if self.fade is None else self.fade.at(now)

    def availability(self) -> bool | None:
        if isinstance(self.adapter, Zigbee2MqttAdapter):
            # The Zigbee2MQTT bridge going down takes every light with it, even if the
            # device's own (retained) availability still says online; groups have none.
            bridge = self.available.get(self.adapter.bridge_state_topic)
            device = self.available.get(self.adapter.availability_topic)
            if bridge is False:
                return False
            return device if device is not None else bridge
        values = list(self.available.values())
        return values[0] if values else None


class LightDriver:
    """Drives every configured light to the same `LightTarget`, stepping long fades.

    `publish` must not block (the MQTT bridge's `publish`). `clock` gives session seconds;
    `speed` is session seconds per real second (the simulation speed), so the transitions
    the lights are sent are real seconds.
    """

    def __init__(
        self,
        config: LightsConfig,
        *,
        publish: Publish,
        clock: FadeClock | None = None,
        speed: float = 1.0,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        if speed <= 0:
            msg = f"speed must be positive, not {speed}"
            raise ValueError(msg)
        self._publish = publish
        self._clock: FadeClock = clock or _LoopTime()
        self._speed = speed
        self._channels = [_Channel(light) for light in config.fixtures]
        #: Called when a light's availability changes (the bridge republishes its state).
        self.on_change = on_change
        self.target: LightTarget | None = None

    async def set(self, target: LightTarget) -> None:
        """Start fading every light to `target`; returns once the first commands are queued.

        A running fade is cancelled and the new one starts from where it had got to.
        """
        self.target = target
        now = self._clock.now()
        end_mireds = kelvin_to_mireds(target.colour_temp_k)
        for channel in self._channels:
            self._cancel(channel)
            end = LightPoint(
                target.level_pct,
                min(max(end_mireds, channel.config.min_mireds), channel.config.max_mireds),
            )
            start = channel.position(now)
            steps = plan_fade(
                start,
                end,
                target.transition_s,
                step_s=channel.config.step_s,
                max_native_s=channel.config.max_native_transition_s,
            )
            total = steps[-1].at_s + steps[-1].cmd.transition_s
            channel.fade = _Fade(end if start is None else start, end, now, total)
            self._send(channel, steps[0].cmd)
            if len(steps) > 1:
                channel.task = asyncio.create_task(
                    self._run(channel, steps[1:], now), name=f"sessiond.lights[{channel.name}]"
                )

    async def wait_idle(self) -> None:
        """Wait until every running fade has sent its last step."""
        tasks = [c.task for c in self._channels if c.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def aclose(self) -> None:
        """Stop every running fade (the lights stay where they are)."""
        tasks = [c.task for c in self._channels if c.task is not None]
        for channel in self._channels:
            self._cancel(channel)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def availability(self) -> dict[str, bool | None]:
        """Each light's last known availability by name (None: not reported yet)."""
        return {channel.config.name: channel.availability() for channel in self._channels}

    def availability_topics(self) -> list[str]:
        """Every topic the bridge should subscribe to and route to `handle_message`."""
        topics: list[str] = []
        for channel in self._channels:
            topics.extend(t for t in channel.available if t not in topics)
        return topics

    def handle_message(self, topic: str, payload: bytes) -> None:
        """An availability message from the broker (routed here by the bridge)."""
        changed = False
        for channel in self._channels:
            if topic not in channel.available:
                continue
            value = channel.adapter.parse_availability(topic, payload)
            if value is None:
                logger.debug("lights: %s: unrecognised availability %r", channel.name, payload)
                continue
            before = channel.availability()
            channel.available[topic] = value
            if channel.availability() != before:
                changed = True
                logger.info(
                    "lights: %s is %s",
                    channel.name,
                    "online" if channel.availability() else "offline",
                )
        if changed and self.on_change is not None:
            self.on_change()

    async def _run(self, channel: _Channel, steps: Sequence[FadeStep], t0: float) -> None:
        for step in steps:
            await self._clock.sleep(t0 + step.at_s - self._clock.now())
            self._send(channel, step.cmd)

    def _send(self, channel: _Channel, cmd: LightCommand) -> None:
        if self._speed != 1.0:
            cmd = dataclasses.replace(cmd, transition_s=cmd.transition_s / self._speed)
        topic, payload = channel.adapter.command(cmd)
        try:
            self._publish(topic, payload, qos=COMMAND_QOS, retain=False)
        except Exception:
            # The room's ambience must never take the caller (the room controller) down.
            logger.exception("lights: %s: cannot queue %s", channel.name, topic)

    @staticmethod
    def _cancel(channel: _Channel) -> None:
        # A cancelled fade is asleep between steps: it sends nothing more.
        task, channel.task = channel.task, None
        if task is not None:
            task.cancel()
