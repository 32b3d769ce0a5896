"""Configuration: TOML validated with pydantic; every key has a default, unknown keys are errors.

The configuration is assembled from each part's own settings: the session's (`[alarms]`,
`[timeline]`, `[nibp]`, `[baseline]`, `[discharge]`, `[checklists]`: plain dataclasses, which
the monitor and `sessiond replay` use without pydantic), the console's, the devices', the
record's, the simulator's and the room's. No part imports this module for its own work; only
the commands that read a configuration file do.

The defaults are what ships; `config/sessiond.toml` documents each of them with its unit and
clinical source (a test keeps the two equal). A mistyped limit must never be silently ignored
in a clinical system, so every model forbids unknown keys.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, ValidationError
from pydantic_core import to_jsonable_python

from sessiond.console.settings import ConsoleConfig, ConsoleUser, HostName
from sessiond.devices.settings import DeviceConfig
from sessiond.errors import ConfigError, KeyProblems
from sessiond.records.settings import RecordsConfig
from sessiond.room.settings import (
    AlarmAudioConfig,
    LightsConfig,
    MqttSettings,
    MusicConfig,
    ScenesConfig,
)
from sessiond.session.settings import (
    SPO2_SCALE,
    AlarmDelay,
    AlarmsConfig,
    AudioConfig,
    BaselineConfig,
    BpHighConfig,
    BpRiseConfig,
    ChecklistItem,
    ChecklistsConfig,
    DeviceLostConfig,
    DischargeConfig,
    DoseGateConfig,
    LimitAlarmConfig,
    LimitLevel,
    Mmhg,
    MmhgHysteresis,
    NibpConfig,
    NibpErrorConfig,
    NibpOverdueConfig,
    RouteTimeline,
    Scale,
    TechnicalAlarmConfig,
    TimelineConfig,
)
from sessiond.settings import Strict
from sessiond.sim.settings import SimConfig
from sessiond.tomlfile import parse_toml, read_toml

# Each part's settings, as importable from here as when this module defined them all.
__all__ = [
    "SPO2_SCALE",
    "AlarmAudioConfig",
    "AlarmDelay",
    "AlarmsConfig",
    "AudioConfig",
    "BaselineConfig",
    "BpHighConfig",
    "BpRiseConfig",
    "ChecklistItem",
    "ChecklistsConfig",
    "Config",
    "ConfigError",
    "ConsoleConfig",
    "ConsoleUser",
    "DeviceConfig",
    "DeviceLostConfig",
    "DischargeConfig",
    "DoseGateConfig",
    "HostName",
    "LightsConfig",
    "LimitAlarmConfig",
    "LimitLevel",
    "Mmhg",
    "MmhgHysteresis",
    "MqttSettings",
    "MusicConfig",
    "NibpConfig",
    "NibpErrorConfig",
    "NibpOverdueConfig",
    "RecordsConfig",
    "RoomConfig",
    "RouteTimeline",
    "Scale",
    "ScenesConfig",
    "SimConfig",
    "TechnicalAlarmConfig",
    "TimelineConfig",
    "load_config",
    "parse_config",
    "parse_toml",
    "read_toml",
]


class RoomConfig(Strict):
    id: str = Field(default="room-1", pattern=r"^[A-Za-z0-9_-]{1,64}$")


def _default_devices() -> dict[str, DeviceConfig]:
    return {
        "spo2": DeviceConfig(decoder="masimo-ascii1"),
        "nibp": DeviceConfig(decoder="suntech-advantage"),
    }


class Config(Strict):
    """The whole configuration file: one table per part."""

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
    # A dataclass (the session's settings) names an unknown key as a keyword argument.
    if error["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
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


def _table(default: object) -> tuple[set[str], dict[str, Any]] | None:
    """The keys of a settings table and its values as JSON data; None when it is not one."""
    if isinstance(default, BaseModel):
        return set(type(default).model_fields), default.model_dump(mode="json")
    if dataclasses.is_dataclass(default) and not isinstance(default, type):
        return {f.name for f in dataclasses.fields(default)}, to_jsonable_python(default)
    return None


def _over_defaults(default: object, given: object) -> object:
    """`given` with what each of its tables leaves out taken from `default` (DESIGN §12).

    `[alarms.spo2_low.medium] limit = 88` keeps the medium delay. A mapping of named entries
    (devices, users, extra scenes) holds the entries the file names, each over its default.
    """
    table = _table(default) if isinstance(given, dict) else None
    if isinstance(given, dict) and table is not None:
        fields, merged = table
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


def load_config(path: str | Path | None) -> Config:
    """The configuration in `path`, or the embedded defaults when `path` is None."""
    if path is None:
        return Config()
    return parse_config(read_toml(Path(path)), source=str(path))
