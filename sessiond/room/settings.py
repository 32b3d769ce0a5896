"""The room's settings: `[lights]`, `[mqtt]`, `[music]`, `[scenes]` and `[alarm_audio]`.

Only pydantic and pure modules here: the configuration reads them (`sessiond check-config`,
the record commands) without the room itself (aiomqtt, libvlc, numpy), which only the
commands that run a room import.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from sessiond.errors import KeyProblems
from sessiond.room.discovery import DEFAULT_DISCOVERY_PREFIX
from sessiond.settings import Seconds, Strict

#: Tasmota's longest native fade (`Speed 40` = 20 s).
TASMOTA_MAX_FADE_S = 20.0
#: Colour temperatures a target may ask for (K); lights clamp to their own range.
KELVIN_MIN = 1000
KELVIN_MAX = 20000

# --- [lights] ----------------------------------------------------------------------------------


class _LightBase(Strict):
    #: Zigbee2MQTT friendly name or group, Tasmota topic, or a display name (Home Assistant).
    name: str = Field(min_length=1, pattern=r"^[^#+]+$")
    #: Warmest and coolest colour temperature the light takes (mireds; 1e6 / kelvin).
    min_mireds: int = Field(default=153, ge=50, le=1000)
    max_mireds: int = Field(default=500, ge=50, le=1000)
    #: Seconds between the daemon's steps of a long fade (each a native transition this long).
    step_s: float = Field(default=5.0, gt=0, le=60)
    #: Longest transition (s) the light is trusted to run itself; longer fades are stepped.
    max_native_transition_s: float = Field(default=20.0, ge=0, le=3600)

    @model_validator(mode="after")
    def _ranges(self) -> _LightBase:
        if self.min_mireds >= self.max_mireds:
            msg = "min_mireds must be below max_mireds"
            raise ValueError(msg)
        return self


class Zigbee2MqttLight(_LightBase):
    adapter: Literal["zigbee2mqtt"]
    #: Zigbee2MQTT's `mqtt.base_topic`.
    base_topic: str = Field(default="zigbee2mqtt", min_length=1, pattern=r"^[^#+]+$")


class TasmotaLight(_LightBase):
    adapter: Literal["tasmota"]
    #: Tasmota fades natively for at most 20 s.
    max_native_transition_s: float = Field(default=TASMOTA_MAX_FADE_S, ge=0, le=TASMOTA_MAX_FADE_S)


class HomeAssistantLight(_LightBase):
    """A light speaking the Home Assistant JSON schema (ESPHome MQTT, custom firmware)."""

    adapter: Literal["homeassistant"]
    command_topic: str = Field(min_length=1, pattern=r"^[^#+]+$")
    #: None: the light publishes no availability (shown as unknown).
    availability_topic: str | None = Field(default=None, pattern=r"^[^#+]+$")
    payload_available: str = "online"
    payload_not_available: str = "offline"
    #: The light takes `color_temp` in kelvin (HA's `color_temp_kelvin: true`), not mireds.
    color_temp_kelvin: bool = False
    #: Brightness at 100 % (HA's `brightness_scale`).
    brightness_scale: int = Field(default=255, ge=1, le=65535)


LightConfig = Annotated[
    Zigbee2MqttLight | TasmotaLight | HomeAssistantLight, Field(discriminator="adapter")
]


class LightsConfig(Strict):
    """The room's lights (`[[lights.fixtures]]`); all of them follow the scene together."""

    fixtures: list[LightConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> LightsConfig:
        names = [light.name for light in self.fixtures]
        if len(names) != len(set(names)):
            msg = "light names must be unique"
            raise ValueError(msg)
        return self


# --- [mqtt] ------------------------------------------------------------------------------------

_TopicText = Annotated[
    str, Field(min_length=1, max_length=128, pattern=r"^[^#+/\s]([^#+\s]*[^#+/\s])?$")
]


class MqttSettings(Strict):
    """`[mqtt]`: the broker, credentials, TLS, topics and rates."""

    #: The daemon runs the bridge only when enabled (the bridge itself does not look).
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)  # TCP port (8883 is usual with TLS)
    username: str | None = None
    password: str | None = None
    #: Connect with TLS; the broker is verified against `ca_file` (or the system's CAs).
    tls: bool = False
    #: CA bundle (PEM file path) that signed the broker's certificate; None: system CAs.
    ca_file: str | None = None
    #: Client certificate and key (PEM file paths) for brokers that require mutual TLS.
    cert_file: str | None = None
    key_file: str | None = None
    #: Skip the broker host-name check (the chain is still verified); test setups only.
    tls_insecure: bool = False
    #: Base topic: everything goes under `<prefix>/<room id>/`.
    prefix: _TopicText = "sessiond"
    #: MQTT client id; None: `sessiond-<room id>` (stable: one per room, never shared).
    client_id: str | None = Field(default=None, min_length=1, max_length=64)
    #: Keep-alive (s): a frozen broker is noticed within about twice this.
    keepalive_s: int = Field(default=10, ge=5, le=3600)
    #: Longest wait (s) for the broker to acknowledge a connect, publish or subscribe.
    timeout_s: float = Field(default=10.0, gt=0, le=120)
    #: Reconnect backoff (s): first retry after about `reconnect_min_s`, doubling to the max.
    reconnect_min_s: float = Field(default=1.0, gt=0, le=60)
    reconnect_max_s: float = Field(default=30.0, gt=0, le=3600)
    #: Home Assistant MQTT discovery (retained per-entity configs).
    discovery: bool = True
    discovery_prefix: _TopicText = DEFAULT_DISCOVERY_PREFIX
    #: Home Assistant restarted: re-send discovery after a random delay up to this (s).
    discovery_delay_max_s: float = Field(default=1.0, ge=0, le=60)
    #: At most this many `vitals` messages per second (Hz).
    vitals_max_rate_hz: float = Field(default=2.0, gt=0, le=20)
    #: At least this long (s) between two `state` messages (bursts of changes coalesce).
    state_min_interval_s: float = Field(default=0.2, ge=0, le=10)
    #: `state` is republished this often (s) during a session, so minutes since dose move.
    state_refresh_s: float = Field(default=60.0, gt=0, le=3600)
    #: Alarm transitions and nurse actions kept for a down broker (messages; oldest dropped).
    event_backlog: int = Field(default=256, ge=0, le=100_000)

    @model_validator(mode="after")
    def _consistent(self) -> MqttSettings:
        if self.reconnect_max_s < self.reconnect_min_s:
            msg = "reconnect_max_s must be at least reconnect_min_s"
            raise ValueError(msg)
        tls_keys = {
            "ca_file": self.ca_file,
            "cert_file": self.cert_file,
            "key_file": self.key_file,
            "tls_insecure": self.tls_insecure or None,
        }
        used = [key for key, value in tls_keys.items() if value is not None]
        if used and not self.tls:
            msg = f"{', '.join(used)} need tls = true"
            raise ValueError(msg)
        if self.key_file is not None and self.cert_file is None:
            msg = "key_file needs cert_file"
            raise ValueError(msg)
        if self.password is not None and self.username is None:
            msg = "password needs username"
            raise ValueError(msg)
        return self


# --- [music] and [alarm_audio] -------------------------------------------------------------


class MusicConfig(Strict):
    """`[music]`: the room's music player."""

    #: False: never load libvlc; the music is reported as disabled.
    enabled: bool = True
    #: Directory of the playlists, one `<phase>.m3u` (or `.m3u8`) per phase; relative paths
    #: are taken from the daemon's working directory. Empty: the shipped playlists, played
    #: from a copy in the cache directory beside the ambient tracks made for them.
    playlists_dir: str = ""
    #: Write the shipped ambient tracks to `<playlists>/audio` at start when missing (a few
    #: seconds the first time); false when the playlists are the clinic's own music.
    generate_ambient: bool = True
    #: Seconds a phase change takes: the old playlist fades out while the new one fades in.
    crossfade_s: Seconds = 8.0
    #: Seconds for a volume change (and for `stop`) when the caller gives none.
    ramp_s: Seconds = 3.0
    #: Music volume (% of the player's 0-100 scale) while ducked for an alarm; never above
    #: the phase's own volume.
    duck_volume_pct: int = Field(default=25, ge=0, le=100)
    #: Seconds to duck: quick (at most 2), so the room is quiet within about a second of an
    #: alarm.
    duck_ramp_s: float = Field(default=0.5, ge=0, le=2)
    #: Seconds to come back from a duck: slow, so the return is not a jolt.
    restore_ramp_s: Seconds = 10.0
    #: libvlc options. The default keeps VLC's normal audio output (PulseAudio or ALSA) and
    #: drops video and console chatter. Headless tests and CI use
    #: `["--aout=alsa", "--alsa-audio-device=null", "--no-video", "--quiet"]`.
    vlc_args: tuple[str, ...] = ("--no-video", "--quiet")


class AlarmAudioConfig(Strict):
    """`[alarm_audio]`: the room's alarm speaker (high alarms, no console watching)."""

    enabled: bool = True
    #: Output volume (% of the player's 0-100 scale); never below 10: an alarm is heard.
    volume_pct: Annotated[int, Field(ge=10, le=100)] = 80
    #: Seconds (real time) without a signed-in console during a session that raise
    #: `console_unwatched` (clinical.md §4.4: 5 s).
    unwatched_after_s: Annotated[float, Field(gt=0, le=60)] = 5.0
    #: libvlc options, as `[music] vlc_args` (headless tests: `--aout=alsa
    #: --alsa-audio-device=null`, or `--aout=afile --audiofile-file=FILE` to capture).
    vlc_args: tuple[str, ...] = ("--no-video", "--quiet")


# --- [scenes] ----------------------------------------------------------------------------------

Percent = Annotated[float, Field(ge=0, le=100)]
Kelvin = Annotated[int, Field(ge=KELVIN_MIN, le=KELVIN_MAX)]

#: The scene of a room with no session running (or after one ended).
IDLE = "idle"
#: Scene names that follow the session; others are extra scenes a nurse may pick.
PHASE_SCENES = ("baseline", "onset", "effect", "recovery", IDLE)


class Scene(Strict):
    """One look and sound of the room."""

    light_pct: Percent
    colour_temp_k: Kelvin
    #: Seconds (session time) the lights take to get there; the music crossfades as set in
    #: `[music] crossfade_s`.
    fade_s: Seconds = 60
    #: A playlist in `[music] playlists_dir` (its name without `.m3u`); empty: no music.
    playlist: str = ""
    volume_pct: Annotated[int, Field(ge=0, le=100)] = 30


class AlarmOverride(Strict):
    """Clinical light and ducked music while an alarm needs the nurse (DESIGN §8)."""

    enabled: bool = True
    #: Alarm priorities that take over the room.
    priorities: tuple[Literal["low", "medium", "high"], ...] = ("high",)
    light_pct: Percent = 100
    colour_temp_k: Kelvin = 4000
    #: About a second (at most 2): the nurse needs light now, not after a fade.
    fade_s: Annotated[float, Field(ge=0, le=2)] = 0.5
    duck_music: bool = True
    #: Seconds back to the scene once the alarm is acknowledged or cleared.
    release_fade_s: Seconds = 20

    @model_validator(mode="after")
    def _high_takes_over(self) -> AlarmOverride:
        # DESIGN §8: a high alarm always brings clinical light; `enabled = false` says "never".
        if self.enabled and "high" not in self.priorities:
            raise KeyProblems([("priorities", "must include 'high' while enabled")])
        return self


class ScenesConfig(Strict):
    """`[scenes.*]`: one scene per phase, the alarm override, and extra named scenes."""

    idle: Scene = Scene(light_pct=60, colour_temp_k=3000, fade_s=30, playlist="", volume_pct=0)
    baseline: Scene = Scene(
        light_pct=45, colour_temp_k=2700, fade_s=60, playlist="baseline", volume_pct=35
    )
    onset: Scene = Scene(
        light_pct=25, colour_temp_k=2400, fade_s=300, playlist="onset", volume_pct=30
    )
    effect: Scene = Scene(
        light_pct=15, colour_temp_k=2200, fade_s=600, playlist="effect", volume_pct=25
    )
    recovery: Scene = Scene(
        light_pct=50, colour_temp_k=3000, fade_s=600, playlist="recovery", volume_pct=30
    )
    alarm: AlarmOverride = AlarmOverride()
    #: Named scenes a nurse can choose (console, MQTT `cmd/scene`), e.g. `[scenes.extra.bright]`.
    extra: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")], Scene] = Field(
        default_factory=dict
    )

    def scene(self, name: str) -> Scene | None:
        if name in PHASE_SCENES:
            scene: Scene = getattr(self, name)
            return scene
        return self.extra.get(name)

    def names(self) -> list[str]:
        return [*PHASE_SCENES, *sorted(self.extra)]
