"""Configuration: TOML validated with pydantic; every key has a default, unknown keys are errors.

The defaults here are what ships; `config/sessiond.toml` documents each of them with its unit
and clinical source (a test keeps the two equal). A mistyped limit must never be silently
ignored in a clinical system, so every model forbids unknown keys.
"""

from __future__ import annotations

import datetime as dt
import json
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from sessiond.console.auth import parse_password_hash
from sessiond.errors import ConfigError as ConfigError  # noqa: PLC0414  (its old home re-exports it)
from sessiond.model import Phase, Priority, Route
from sessiond.room.alarm_tone import AlarmAudioConfig
from sessiond.room.lights import LightsConfig
from sessiond.room.mqtt import MqttSettings
from sessiond.room.music import MusicConfig
from sessiond.room.scenes import ScenesConfig
from sessiond.settings import KeyProblems, Minutes, Strict

#: An alarm delay (or clear delay): beyond 2 min an alarm is as good as off (SpO2 monitors
#: offer up to 30 s; clinical.md §3).
AlarmDelay = Annotated[float, Field(ge=0, le=120)]
#: A BP limit or threshold (mmHg): outside what an NIBP module measures is a typo.
Mmhg = Annotated[float, Field(ge=40, le=300)]
#: BP hysteresis (mmHg): DESIGN §5 uses 5; a wide one keeps an alarm from ever clearing.
MmhgHysteresis = Annotated[float, Field(ge=0, le=20)]


class RoomConfig(Strict):
    id: str = Field(default="room-1", pattern=r"^[A-Za-z0-9_-]{1,64}$")


class ConsoleUser(Strict):
    #: `pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>`, made by `sessiond hash-password`.
    password_hash: str = Field(pattern=r"^pbkdf2_sha256\$\d+\$[0-9a-f]+\$[0-9a-f]+$")

    @field_validator("password_hash")
    @classmethod
    def _verifiable(cls, v: str) -> str:
        # A hash sign-in would refuse locks the user out; say so now, not at the bedside.
        parse_password_hash(v)
        return v


#: A host name or address as a browser puts it in the Host header (no port).
HostName = Annotated[str, Field(pattern=r"^[A-Za-z0-9]([A-Za-z0-9.:-]{0,252})$")]


class ConsoleConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    #: Names the console answers to besides the loopback ones and `host` (the Host header is
    #: checked: a DNS-rebinding page under another name reads nothing).
    allowed_hosts: tuple[HostName, ...] = ()
    #: PEM certificate (chain) and key: both set serve HTTPS, and the cookie is `Secure`.
    tls_cert: str = ""
    tls_key: str = ""
    #: Live connections at most (every one is a signed-in page).
    max_websockets: Annotated[int, Field(ge=1, le=256)] = 16
    #: Failed sign-ins for one user name within `login_lockout_s` that lock it for as long
    #: (one client address may fail four times as often, across names).
    login_max_failures: Annotated[int, Field(ge=1, le=100)] = 5
    login_lockout_s: Annotated[float, Field(ge=10, le=86_400)] = 300
    users: dict[str, ConsoleUser] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _tls_pair(self) -> ConsoleConfig:
        if bool(self.tls_cert) != bool(self.tls_key):
            missing = "tls_key" if self.tls_cert else "tls_cert"
            _check([(missing, "tls_cert and tls_key go together: set both or neither")])
        return self


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
    baudrate: int | None = Field(default=None, gt=0, le=4_000_000)
    #: Silence this long (s, at most a minute) is a lost link (reopen); None: the protocol's
    #: own watchdog.
    silence_timeout_s: float | None = Field(default=None, gt=0, le=60)


class LimitLevel(Strict):
    """One priority level of a limit alarm: beyond `limit` for `delay_s` raises it."""

    limit: float
    delay_s: AlarmDelay = 0.0
    latched: bool = False


class Scale(NamedTuple):
    """The sane range of one value's limits and hysteresis, in its unit (DESIGN §5)."""

    unit: str
    low: float
    high: float
    max_hysteresis: float


SPO2_SCALE = Scale("%", 50, 100, 5)
PR_SCALE = Scale("bpm", 20, 250, 10)
SYS_SCALE = Scale("mmHg", 40, 300, 20)
#: The limit alarms of DESIGN §5: the scale of their value, and whether they alarm below it.
_LIMIT_ALARMS = {
    "spo2_low": (SPO2_SCALE, True),
    "pr_high": (PR_SCALE, False),
    "pr_low": (PR_SCALE, True),
    "bp_low": (SYS_SCALE, True),
}


def _got(value: float) -> str:
    return f"got {value:g}"


def _check(found: list[tuple[str, str]]) -> None:
    if found:
        raise KeyProblems(found)


def _above(
    model: BaseModel, key: str, other: str, *, or_equal: bool = False
) -> list[tuple[str, str]]:
    """`key` of `model` must be above `other` (or equal): a worse level needs a worse value."""
    value, bound = getattr(model, key), getattr(model, other)
    if value > bound or (or_equal and value == bound):
        return []
    relation = "at least" if or_equal else "above"
    return [(key, f"must be {relation} {other} ({bound:g}) ({_got(value)})")]


class LimitAlarmConfig(Strict):
    """A physiological limit alarm with up to two levels (medium, high)."""

    enabled: bool = True
    medium: LimitLevel | None = None
    high: LimitLevel | None = None
    #: Back inside the limit by at least this much (the value's unit) before clearing.
    hysteresis: Annotated[float, Field(ge=0)] = 0.0
    clear_delay_s: AlarmDelay = 5.0
    #: A delay frozen by invalid or missing data this long starts again (PRD: artifact
    #: suspension ≤ 30 s, clinical.md §4.4).
    freeze_max_s: AlarmDelay = 30.0
    #: An unacknowledged medium alarm still active this long (s, at most 10 min) becomes
    #: high; None: never.
    escalate_after_s: Annotated[float, Field(gt=0, le=600)] | None = None

    def problems(self, scale: Scale, *, below: bool) -> list[tuple[str, str]]:
        """What is wrong with these limits for a value on `scale` that alarms `below` them."""
        unit = scale.unit
        found = [
            (
                f"{name}.limit",
                f"must be within {scale.low:g}-{scale.high:g} {unit} ({_got(level.limit)})",
            )
            for name, level in (("medium", self.medium), ("high", self.high))
            if level is not None and not scale.low <= level.limit <= scale.high
        ]
        if self.hysteresis > scale.max_hysteresis:
            problem = f"must be at most {scale.max_hysteresis:g} {unit} ({_got(self.hysteresis)})"
            found.append(("hysteresis", problem))
        # The high level is the worse value: further below (or above) than the medium one.
        medium, high = self.medium, self.high
        if found or medium is None or high is None:
            return found
        if not (high.limit < medium.limit if below else high.limit > medium.limit):
            side, value = ("below", "low") if below else ("above", "high")
            problem = (
                f"must be {side} medium.limit ({medium.limit:g}) for an alarm on a {value} "
                f"value ({_got(high.limit)})"
            )
            found.append(("high.limit", problem))
        return found


class TechnicalAlarmConfig(Strict):
    """A technical condition that raises after `delay_s` and clears as soon as it is gone."""

    enabled: bool = True
    priority: Literal["low", "medium", "high"] = "medium"
    delay_s: AlarmDelay = 5.0

    @property
    def level(self) -> Priority:
        return Priority.from_label(self.priority)


class DeviceLostConfig(Strict):
    enabled: bool = True
    medium_after_s: AlarmDelay = 5.0
    high_after_s: AlarmDelay = 30.0
    high_phases: tuple[Phase, ...] = (Phase.ONSET, Phase.EFFECT)
    high_latched: bool = True

    @model_validator(mode="after")
    def _ordered(self) -> DeviceLostConfig:
        _check(_above(self, "high_after_s", "medium_after_s", or_equal=True))
        return self


class BpHighConfig(Strict):
    """`bp_high`: per BP reading; medium at once, high when confirmed (DESIGN §5)."""

    enabled: bool = True
    medium_sys_mmhg: Mmhg = 160
    medium_dia_mmhg: Mmhg = 100
    high_sys_mmhg: Mmhg = 180
    high_dia_mmhg: Mmhg = 110
    #: Consecutive readings at or above the high limits that raise high.
    high_confirmations: Annotated[int, Field(ge=1, le=5)] = 2
    #: One reading at or above these raises high at once.
    critical_sys_mmhg: Mmhg = 200
    critical_dia_mmhg: Mmhg = 120
    high_latched: bool = True
    hysteresis_mmhg: MmhgHysteresis = 5
    #: The value back inside the limit with hysteresis this long before the condition
    #: clears (DESIGN §5).
    clear_delay_s: AlarmDelay = 5.0

    @model_validator(mode="after")
    def _ordered(self) -> BpHighConfig:
        _check(
            _above(self, "high_sys_mmhg", "medium_sys_mmhg")
            + _above(self, "high_dia_mmhg", "medium_dia_mmhg")
            + _above(self, "critical_sys_mmhg", "high_sys_mmhg", or_equal=True)
            + _above(self, "critical_dia_mmhg", "high_dia_mmhg", or_equal=True)
        )
        return self


class BpRiseConfig(Strict):
    """`bp_rise`: after the dose, a rise from the pre-dose baseline."""

    enabled: bool = True
    priority: Literal["low", "medium", "high"] = "medium"
    sys_rise_mmhg: Annotated[float, Field(gt=0, le=100)] = 40
    dia_rise_mmhg: Annotated[float, Field(gt=0, le=100)] = 25
    hysteresis_mmhg: MmhgHysteresis = 5
    #: The value back inside the limit with hysteresis this long before the condition
    #: clears (DESIGN §5).
    clear_delay_s: AlarmDelay = 5.0

    @property
    def level(self) -> Priority:
        return Priority.from_label(self.priority)


class DoseGateConfig(Strict):
    """`dose_gate`: before the dose, on the baseline so far."""

    enabled: bool = True
    #: Above these (strictly) → low: prescriber review.
    low_sys_mmhg: Mmhg = 140
    low_dia_mmhg: Mmhg = 90
    #: At or above these → high: dosing needs an override with a reason.
    high_sys_mmhg: Mmhg = 180
    high_dia_mmhg: Mmhg = 110
    hysteresis_mmhg: MmhgHysteresis = 5
    #: The value back inside the limit with hysteresis this long before the condition
    #: clears (DESIGN §5).
    clear_delay_s: AlarmDelay = 5.0

    @model_validator(mode="after")
    def _ordered(self) -> DoseGateConfig:
        _check(
            _above(self, "high_sys_mmhg", "low_sys_mmhg")
            + _above(self, "high_dia_mmhg", "low_dia_mmhg")
        )
        return self


class NibpErrorConfig(Strict):
    """`nibp_error`: a failed BP measurement; repeated failures in critical phases escalate."""

    enabled: bool = True
    priority: Literal["low", "medium", "high"] = "low"
    escalate_after_failures: Annotated[int, Field(ge=1, le=5)] = 2
    escalated_priority: Literal["low", "medium", "high"] = "medium"
    escalate_phases: tuple[Phase, ...] = (Phase.ONSET, Phase.EFFECT)

    @model_validator(mode="after")
    def _ordered(self) -> NibpErrorConfig:
        if Priority.from_label(self.escalated_priority) < Priority.from_label(self.priority):
            problem = f"must not be below priority ({self.priority!r}): escalation never lowers"
            _check([("escalated_priority", problem)])
        return self


class NibpOverdueConfig(Strict):
    """`nibp_overdue`: no valid BP reading for the phase's interval plus a grace period."""

    enabled: bool = True
    priority: Literal["low", "medium", "high"] = "medium"
    grace_min: Annotated[float, Field(ge=0, le=60)] = 5


class AudioConfig(Strict):
    """Alarm audio: the nurse's global pause."""

    pause_s: Annotated[float, Field(gt=0, le=600)] = 120
    #: A new high alarm ends a pause early.
    high_ends_pause: bool = True
    #: Real seconds between reminder bursts of an acknowledged alarm whose condition stays
    #: (clinical.md §1.3: 2-3 min); at most 15 min.
    reminder_s: Annotated[float, Field(gt=0, le=900)] = 150


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
        medium=LimitLevel(limit=90), high=LimitLevel(limit=80), hysteresis=5, clear_delay_s=5
    )
    bp_rise: BpRiseConfig = BpRiseConfig()
    dose_gate: DoseGateConfig = DoseGateConfig()
    nibp_error: NibpErrorConfig = NibpErrorConfig()
    nibp_overdue: NibpOverdueConfig = NibpOverdueConfig()
    audio: AudioConfig = AudioConfig()

    @field_validator(*_LIMIT_ALARMS)
    @classmethod
    def _sane_limits(cls, v: LimitAlarmConfig, info: ValidationInfo) -> LimitAlarmConfig:
        scale, below = _LIMIT_ALARMS[info.field_name or ""]
        _check(v.problems(scale, below=below))
        return v


#: A BP schedule interval: longer than an hour leaves a ketamine session unwatched.
BpInterval = Annotated[float, Field(gt=0, le=60)]


class NibpConfig(Strict):
    """The BP schedule (DESIGN §5) and the live command timeouts."""

    baseline_interval_min: BpInterval = 5
    onset_interval_min: BpInterval = 10
    effect_interval_min: BpInterval = 15
    recovery_interval_min: BpInterval = 30
    #: While an infusion runs (started, not stopped; paused included), after the dose.
    infusion_interval_min: BpInterval = 10
    #: Forced readings, minutes after the dose.
    forced_after_dose_min: tuple[Minutes, ...] = (40,)
    #: Re-measure at once after a medium or high BP alarm.
    remeasure_on_alarm: bool = True
    #: A command unanswered this long (s, at most 30): the module is lost.
    command_timeout_s: Annotated[float, Field(gt=0, le=30)] = 5
    #: A measurement with no result this long (s) after it started has failed; an adult
    #: cuff stays inflated at most 180 s (IEC 80601-2-30).
    measurement_timeout_s: Annotated[float, Field(gt=0, le=300)] = 150

    def interval_s(self, phase: Phase, *, infusion: bool = False) -> float | None:
        """The interval of `phase`; the infusion's while one runs after the dose."""
        if infusion and phase in {Phase.ONSET, Phase.EFFECT, Phase.RECOVERY}:
            return self.infusion_interval_min * 60.0
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
    bp_readings: Annotated[int, Field(ge=1, le=10)] = 2
    #: SpO2 and PR baseline: medians of the valid values in this window before the dose.
    window_min: Annotated[float, Field(gt=0, le=60)] = 5


class DischargeConfig(Strict):
    """Discharge readiness (DESIGN §5): shown to the nurse, never acted on automatically."""

    spo2_min_pct: Annotated[float, Field(ge=SPO2_SCALE.low, le=SPO2_SCALE.high)] = 92
    spo2_window_min: Annotated[float, Field(gt=0, le=60)] = 5
    #: Wider than ±50 % of the baseline is no check at all.
    within_baseline_pct: Annotated[float, Field(gt=0, le=50)] = 20


class RouteTimeline(Strict):
    onset_min: Minutes = 30.0
    effect_end_min: Minutes = 150.0
    #: Discharge readiness needs at least this long since the dose (the route's minimum).
    discharge_after_min: Minutes = 120.0
    #: An infusion still running when the effect window would end holds `effect` until its
    #: stop plus this long.
    infusion_tail_min: Minutes = 90.0
    #: After an infusion, readiness also needs at least this long since its stop.
    discharge_after_stop_min: Minutes = 90.0

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


class ChecklistItem(Strict):
    """One line of a paper checklist, confirmed by a nurse in the console."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    text: str = Field(min_length=1, max_length=200)


def _unique_ids(items: tuple[ChecklistItem, ...], key: str) -> list[tuple[str, str]]:
    ids = [item.id for item in items]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    return [(key, f"item ids must be unique ({', '.join(twice)} repeated)")] if twice else []


class ChecklistsConfig(Strict):
    """`[checklists]`: what a clinic checks on paper before the dose and at discharge."""

    #: Confirmed before the dose; the dose needs every item, or an override with a reason.
    predose: tuple[ChecklistItem, ...] = (
        ChecklistItem(id="fasting_solids", text="No solid food for 6 h"),
        ChecklistItem(id="fasting_liquids", text="No clear liquids for 2 h"),
        ChecklistItem(id="escort", text="Escort home arranged"),
        ChecklistItem(id="consent", text="Consent signed"),
        ChecklistItem(id="medications", text="Medications reviewed"),
        ChecklistItem(id="baseline_bp", text="Baseline BP taken"),
    )
    #: Confirmed with the nurse's sign-off at discharge (time since dose and vitals against
    #: baseline are checked by the daemon's readiness and shown beside them).
    discharge: tuple[ChecklistItem, ...] = (
        ChecklistItem(id="escort_present", text="Escort present"),
        ChecklistItem(id="alert", text="Alert, oriented, walks steadily"),
        ChecklistItem(id="instructions", text="Aftercare instructions given"),
    )

    @model_validator(mode="after")
    def _ids(self) -> ChecklistsConfig:
        _check(_unique_ids(self.predose, "predose") + _unique_ids(self.discharge, "discharge"))
        return self


class RecordsConfig(Strict):
    path: str = "sessiond.sqlite"
    #: `sessiond purge` without `--before` deletes sessions that ended more than this many
    #: days ago; 0 keeps every record (the daemon itself never deletes).
    keep_days: Annotated[int, Field(ge=0)] = 0
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
    checklists: ChecklistsConfig = ChecklistsConfig()
    records: RecordsConfig = RecordsConfig()
    scenes: ScenesConfig = ScenesConfig()
    lights: LightsConfig = LightsConfig()
    music: MusicConfig = MusicConfig()
    alarm_audio: AlarmAudioConfig = AlarmAudioConfig()
    sim: SimConfig = SimConfig()


def _describe(error: dict[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "required key is missing"
    got = error.get("input")
    shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
    return f"{error['msg']}{shown}"


def _problems(error: dict[str, Any]) -> list[tuple[str, str]]:
    """(dotted key, what is wrong) of one validation error; a model's check may name several."""
    key = ".".join(str(part) for part in error["loc"])
    found = error.get("ctx", {}).get("error")
    if isinstance(found, KeyProblems):
        return [(f"{key}.{inner}" if key else inner, problem) for inner, problem in found.problems]
    return [(key or "(top level)", _describe(error))]


def _over_defaults(default: object, given: object) -> object:
    """`given` with what each of its tables leaves out taken from `default` (DESIGN §12).

    `[alarms.spo2_low.medium] limit = 88` keeps the medium delay. A mapping of named entries
    (devices, users, extra scenes) holds the entries the file names, each over its default.
    """
    if isinstance(given, dict) and isinstance(default, BaseModel):
        fields = type(default).model_fields
        merged = default.model_dump(mode="json")
        for key, value in given.items():
            merged[key] = _over_defaults(getattr(default, key) if key in fields else None, value)
        return merged
    if isinstance(given, dict) and isinstance(default, dict):
        return {key: _over_defaults(default.get(key), value) for key, value in given.items()}
    return given


def _dates(data: object, key: str = "") -> list[str]:
    """The dotted keys holding a TOML date or time: no setting is one, and JSON has none."""
    if isinstance(data, dict):
        return [k for name, value in data.items() for k in _dates(value, f"{key}{name}.")]
    if isinstance(data, list):
        return [k for i, value in enumerate(data) for k in _dates(value, f"{key}{i}.")]
    dated = isinstance(data, dt.date | dt.time)
    return [key.removesuffix(".")] if dated else []


def parse_config(data: dict[str, Any], *, source: str) -> Config:
    """Validate already-parsed TOML; raises `ConfigError` naming `source`, each key and problem.

    TOML types are kept: `port = "8080"` or `enabled = 1` is refused, not converted (an int
    is a float, as TOML writes `limit = 90`).
    """
    dated = _dates(data)
    if dated:
        raise ConfigError(
            [f"{source}: {key}: a date or time is not a valid value here" for key in dated]
        )
    text = json.dumps(_over_defaults(Config(), data))
    try:
        # JSON mode: strict types that still take a TOML array for a tuple and a string for
        # an enum.
        return Config.model_validate_json(text, strict=True)
    except ValidationError as exc:
        problems = [
            f"{source}: {key}: {problem}"
            for error in exc.errors()
            for key, problem in _problems(dict(error))
        ]
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
