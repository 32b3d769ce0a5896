"""Configuration: TOML validated with pydantic; every key has a default, unknown keys are errors.

The defaults here are what ships; `config/sessiond.toml` documents each of them with its unit
and clinical source (a test keeps the two equal). A mistyped limit must never be silently
ignored in a clinical system, so every model forbids unknown keys.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from sessiond.model import Phase, Priority, Route
from sessiond.room.lights import LightsConfig
from sessiond.room.mqtt import MqttSettings
from sessiond.room.music import MusicConfig
from sessiond.room.scenes import ScenesConfig
from sessiond.settings import Minutes, Seconds, Strict


class RoomConfig(Strict):
    id: str = Field(default="room-1", pattern=r"^[A-Za-z0-9_-]{1,64}$")


class ConsoleUser(Strict):
    #: `pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>`, made by `sessiond hash-password`.
    password_hash: str = Field(pattern=r"^pbkdf2_sha256\$\d+\$[0-9a-f]+\$[0-9a-f]+$")


class ConsoleConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    users: dict[str, ConsoleUser] = Field(default_factory=dict)


class DeviceConfig(Strict):
    path: str = ""
    decoder: Literal[
        "masimo-ascii1",
        "nonin-df7",
        "nonin-df2",
        "nonin-ascii",
        "contec-v7",
        "contec-legacy",
        "suntech-advantage",
    ] = "masimo-ascii1"
    #: None: the protocol's own baud rate.
    baudrate: int | None = Field(default=None, gt=0)
    #: Silence this long is a lost link (reopen); None: the protocol's own watchdog.
    silence_timeout_s: float | None = Field(default=None, gt=0)


class LimitLevel(Strict):
    """One priority level of a limit alarm: beyond `limit` for `delay_s` raises it."""

    limit: float
    delay_s: Seconds = 0.0
    latched: bool = False


class LimitAlarmConfig(Strict):
    """A physiological limit alarm with up to two levels (medium, high)."""

    enabled: bool = True
    medium: LimitLevel | None = None
    high: LimitLevel | None = None
    #: Back inside the limit by at least this much (the value's unit) before clearing.
    hysteresis: Annotated[float, Field(ge=0)] = 0.0
    clear_delay_s: Seconds = 5.0
    #: A delay frozen by invalid or missing data this long starts again (PRD: artifact
    #: suspension ≤ 30 s, clinical.md §4.4).
    freeze_max_s: Seconds = 30.0
    #: An unacknowledged medium alarm still active this long becomes high; None: never.
    escalate_after_s: Annotated[float, Field(gt=0)] | None = None


class TechnicalAlarmConfig(Strict):
    """A technical condition that raises after `delay_s` and clears as soon as it is gone."""

    enabled: bool = True
    priority: Literal["low", "medium", "high"] = "medium"
    delay_s: Seconds = 5.0

    @property
    def level(self) -> Priority:
        return Priority.from_label(self.priority)


class DeviceLostConfig(Strict):
    enabled: bool = True
    medium_after_s: Seconds = 5.0
    high_after_s: Seconds = 30.0
    high_phases: tuple[Phase, ...] = (Phase.ONSET, Phase.EFFECT)
    high_latched: bool = True


class BpHighConfig(Strict):
    """`bp_high`: per BP reading; medium at once, high when confirmed (DESIGN §5)."""

    enabled: bool = True
    medium_sys_mmhg: float = 160
    medium_dia_mmhg: float = 100
    high_sys_mmhg: float = 180
    high_dia_mmhg: float = 110
    #: Consecutive readings at or above the high limits that raise high.
    high_confirmations: Annotated[int, Field(ge=1)] = 2
    #: One reading at or above these raises high at once.
    critical_sys_mmhg: float = 200
    critical_dia_mmhg: float = 120
    high_latched: bool = True
    hysteresis_mmhg: Annotated[float, Field(ge=0)] = 5
    clear_delay_s: Seconds = 5.0


class BpRiseConfig(Strict):
    """`bp_rise`: after the dose, a rise from the pre-dose baseline."""

    enabled: bool = True
    priority: Literal["low", "medium", "high"] = "medium"
    sys_rise_mmhg: Annotated[float, Field(gt=0)] = 40
    dia_rise_mmhg: Annotated[float, Field(gt=0)] = 25
    hysteresis_mmhg: Annotated[float, Field(ge=0)] = 5
    clear_delay_s: Seconds = 5.0

    @property
    def level(self) -> Priority:
        return Priority.from_label(self.priority)


class DoseGateConfig(Strict):
    """`dose_gate`: before the dose, on the baseline so far."""

    enabled: bool = True
    #: Above these (strictly) → low: prescriber review.
    low_sys_mmhg: float = 140
    low_dia_mmhg: float = 90
    #: At or above these → high: dosing needs an override with a reason.
    high_sys_mmhg: float = 180
    high_dia_mmhg: float = 110
    hysteresis_mmhg: Annotated[float, Field(ge=0)] = 5
    clear_delay_s: Seconds = 5.0


class NibpErrorConfig(Strict):
    """`nibp_error`: a failed BP measurement; repeated failures in critical phases escalate."""

    enabled: bool = True
    priority: Literal["low", "medium", "high"] = "low"
    escalate_after_failures: Annotated[int, Field(ge=1)] = 2
    escalated_priority: Literal["low", "medium", "high"] = "medium"
    escalate_phases: tuple[Phase, ...] = (Phase.ONSET, Phase.EFFECT)


class NibpOverdueConfig(Strict):
    """`nibp_overdue`: no valid BP reading for the phase's interval plus a grace period."""

    enabled: bool = True
    priority: Literal["low", "medium", "high"] = "medium"
    grace_min: Annotated[float, Field(ge=0)] = 5


class AudioConfig(Strict):
    """Alarm audio: the nurse's global pause."""

    pause_s: Annotated[float, Field(gt=0, le=600)] = 120
    #: A new high alarm ends a pause early.
    high_ends_pause: bool = True


class AlarmsConfig(Strict):
    spo2_low: LimitAlarmConfig = LimitAlarmConfig(
        medium=LimitLevel(limit=90, delay_s=15),
        high=LimitLevel(limit=85, delay_s=0, latched=True),
        hysteresis=1,
    )
    pr_high: LimitAlarmConfig = LimitAlarmConfig(
        medium=LimitLevel(limit=120, delay_s=10),
        high=LimitLevel(limit=140, delay_s=10),
        hysteresis=2,
    )
    pr_low: LimitAlarmConfig = LimitAlarmConfig(
        medium=LimitLevel(limit=50, delay_s=10),
        high=LimitLevel(limit=40, delay_s=5, latched=True),
        hysteresis=2,
    )
    sensor_off: TechnicalAlarmConfig = TechnicalAlarmConfig(priority="medium", delay_s=5)
    signal_poor: TechnicalAlarmConfig = TechnicalAlarmConfig(priority="low", delay_s=30)
    device_lost: DeviceLostConfig = DeviceLostConfig()
    bp_high: BpHighConfig = BpHighConfig()
    bp_low: LimitAlarmConfig = LimitAlarmConfig(
        medium=LimitLevel(limit=90), high=LimitLevel(limit=80), hysteresis=5
    )
    bp_rise: BpRiseConfig = BpRiseConfig()
    dose_gate: DoseGateConfig = DoseGateConfig()
    nibp_error: NibpErrorConfig = NibpErrorConfig()
    nibp_overdue: NibpOverdueConfig = NibpOverdueConfig()
    audio: AudioConfig = AudioConfig()


class NibpConfig(Strict):
    """The BP schedule (DESIGN §5) and the live command timeouts."""

    baseline_interval_min: Minutes = 5
    onset_interval_min: Minutes = 10
    effect_interval_min: Minutes = 15
    recovery_interval_min: Minutes = 30
    #: Forced readings, minutes after the dose.
    forced_after_dose_min: tuple[Minutes, ...] = (40,)
    #: Re-measure at once after a medium or high BP alarm.
    remeasure_on_alarm: bool = True
    #: A command unanswered this long: the module is lost.
    command_timeout_s: Annotated[float, Field(gt=0)] = 5
    #: A measurement with no result this long after it started has failed.
    measurement_timeout_s: Annotated[float, Field(gt=0)] = 150

    def interval_s(self, phase: Phase) -> float | None:
        minutes = {
            Phase.BASELINE: self.baseline_interval_min,
            Phase.ONSET: self.onset_interval_min,
            Phase.EFFECT: self.effect_interval_min,
            Phase.RECOVERY: self.recovery_interval_min,
        }.get(phase)
        return None if minutes is None else minutes * 60.0


class BaselineConfig(Strict):
    """The pre-dose baseline (DESIGN §5)."""

    #: BP baseline: the mean of the last this many pre-dose readings.
    bp_readings: Annotated[int, Field(ge=1)] = 2
    #: SpO2 and PR baseline: medians of the valid values in this window before the dose.
    window_min: Minutes = 5


class DischargeConfig(Strict):
    """Discharge readiness (DESIGN §5): shown to the nurse, never acted on automatically."""

    spo2_min_pct: float = 92
    spo2_window_min: Minutes = 5
    within_baseline_pct: Annotated[float, Field(gt=0)] = 20


class RouteTimeline(Strict):
    onset_min: Minutes = 30.0
    effect_end_min: Minutes = 150.0
    #: Discharge readiness needs at least this long since the dose (the route's minimum).
    discharge_after_min: Minutes = 120.0

    @field_validator("effect_end_min")
    @classmethod
    def _after_onset(cls, v: float, info: ValidationInfo) -> float:
        onset = info.data.get("onset_min")
        if onset is not None and v <= onset:
            msg = f"must be after onset_min ({onset})"
            raise ValueError(msg)
        return v


class TimelineConfig(Strict):
    iv: RouteTimeline = RouteTimeline()
    im: RouteTimeline = RouteTimeline()
    intranasal: RouteTimeline = RouteTimeline()
    oral: RouteTimeline = RouteTimeline(onset_min=60, effect_end_min=240, discharge_after_min=240)

    def for_route(self, route: Route) -> RouteTimeline:
        timeline: RouteTimeline = getattr(self, route.value)
        return timeline


class RecordsConfig(Strict):
    path: str = "sessiond.sqlite"
    #: Readings held in memory while the record cannot be written (≈ 0.2 KB each, 0.6 KB
    #: with a pleth waveform); past it the oldest are dropped, counted and recorded.
    buffer_readings: int = Field(default=100_000, ge=100, le=10_000_000)


class SimConfig(Strict):
    #: A scenario file; empty: the built-in demo scenario.
    scenario: str = ""


def _default_devices() -> dict[str, DeviceConfig]:
    return {
        "spo2": DeviceConfig(decoder="masimo-ascii1"),
        "nibp": DeviceConfig(decoder="suntech-advantage"),
    }


class Config(Strict):
    room: RoomConfig = RoomConfig()
    mqtt: MqttSettings = MqttSettings()
    console: ConsoleConfig = ConsoleConfig()
    devices: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")], DeviceConfig] = Field(
        default_factory=_default_devices
    )
    alarms: AlarmsConfig = AlarmsConfig()
    timeline: TimelineConfig = TimelineConfig()
    nibp: NibpConfig = NibpConfig()
    baseline: BaselineConfig = BaselineConfig()
    discharge: DischargeConfig = DischargeConfig()
    records: RecordsConfig = RecordsConfig()
    scenes: ScenesConfig = ScenesConfig()
    lights: LightsConfig = LightsConfig()
    music: MusicConfig = MusicConfig()
    sim: SimConfig = SimConfig()


class ConfigError(Exception):
    """A configuration file that cannot be used; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _describe(error: dict[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "required key is missing"
    got = error.get("input")
    shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
    return f"{error['msg']}{shown}"


def parse_config(data: dict[str, Any], *, source: str) -> Config:
    """Validate already-parsed TOML; raises `ConfigError` naming `source`, each key and problem."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"]) or "(top level)"
            problems.append(f"{source}: {key}: {_describe(dict(error))}")
        raise ConfigError(problems) from None


def parse_toml(text: str, *, source: str) -> dict[str, Any]:
    """TOML text as data; `ConfigError` naming `source` when it is not TOML."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{source}: not valid TOML: {exc}"]) from None


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file as data; `ConfigError` naming the file when it cannot be read or parsed."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text"]) from None
    return parse_toml(text, source=str(path))


def load_config(path: str | Path | None) -> Config:
    """The configuration in `path`, or the embedded defaults when `path` is None."""
    if path is None:
        return Config()
    return parse_config(read_toml(Path(path)), source=str(path))
