"""Simulator scenarios: TOML files a clinic trainer can write, validated strictly.

A scenario names a patient (resting vitals) and a list of timed events that the simulator
plays back on the device lines. Unknown keys are errors, as in the daemon's configuration,
so a mistyped event never silently does nothing during a training session.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from sessiond.config import ConfigError, parse_toml, read_toml

#: Default session length: three hours.
DEFAULT_DURATION_S = 3 * 60 * 60

_BUILTIN_PACKAGE = "sessiond.sim"
_BUILTIN_DIR = "scenarios"
_BUILTIN_NAME = re.compile(r"^[a-z0-9_-]{1,64}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Patient(_Strict):
    """The patient's resting vitals, around which the simulator adds breathing and noise."""

    #: Resting SpO2, %.
    spo2: float = Field(default=97.5, ge=70, le=100)
    #: Resting pulse rate, bpm.
    pr: float = Field(default=72.0, ge=30, le=200)
    #: Resting perfusion index, %.
    pi: float = Field(default=3.0, ge=0.1, le=20)
    #: Breaths per minute (drives the breathing-related SpO2 swing and sinus arrhythmia).
    resp_rate_per_min: float = Field(default=14.0, ge=4, le=40)


class Desaturation(_Strict):
    """SpO2 falls to `spo2` over `ramp_s`, holds, and recovers over `ramp_s`, within the window."""

    kind: Literal["desaturation"]
    #: Start of the window, session seconds.
    at_s: float = Field(ge=0)
    #: Length of the window, ramps included, seconds.
    duration_s: float = Field(gt=0)
    #: Target SpO2 at the bottom of the dip, %.
    spo2: float = Field(ge=50, le=100)
    #: Seconds to ramp down at the start and back up at the end.
    ramp_s: float = Field(default=10.0, ge=0)

    @field_validator("ramp_s")
    @classmethod
    def _ramps_fit(cls, v: float, info: ValidationInfo) -> float:
        window = info.data.get("duration_s")
        if window is not None and 2 * v > window:
            msg = f"both ramps must fit in duration_s ({window:g} s)"
            raise ValueError(msg)
        return v


class SensorOff(_Strict):
    """The probe is off the finger: the oximeter sends dashes and the sensor-off flag."""

    kind: Literal["sensor_off"]
    #: Start, session seconds.
    at_s: float = Field(ge=0)
    #: How long the probe stays off, seconds.
    duration_s: float = Field(gt=0)


class Garbage(_Strict):
    """Line noise: `bytes` random bytes before the next line (or every line in the window)."""

    kind: Literal["garbage"]
    #: Start, session seconds.
    at_s: float = Field(ge=0)
    #: 0: one burst before the next line; more: a burst before every line in the window.
    duration_s: float = Field(default=0.0, ge=0)
    #: Junk bytes per burst.
    bytes: int = Field(ge=1, le=4096)


Event = Annotated[Desaturation | SensorOff | Garbage, Field(discriminator="kind")]
EVENT_KINDS = ("desaturation", "sensor_off", "garbage")


class Scenario(_Strict):
    """One simulated session: who the patient is and what happens when."""

    name: str = Field(min_length=1)
    description: str = ""
    #: Seed of every random stream of the scenario (same seed, same bytes).
    seed: int = Field(default=0, ge=0)
    #: Session length, seconds (one oximeter line per second).
    duration_s: int = Field(default=DEFAULT_DURATION_S, gt=0, le=7 * 24 * 60 * 60)
    patient: Patient = Patient()
    events: tuple[Event, ...] = ()

    def rng(self, stream: int) -> np.random.Generator:
        """An independent random stream of the seed (one per use, so no use shifts another)."""
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(stream,)))


def _key(loc: tuple[int | str, ...]) -> str:
    match loc:
        # A tagged union puts the tag into the location (`events.0.desaturation.spo2`): drop it.
        case ("events", int(index), str(tag), *rest) if tag in EVENT_KINDS:
            loc = ("events", index, *rest)
        case _:
            pass
    return ".".join(str(part) for part in loc) or "(top level)"


def _problem(error: dict[str, Any]) -> tuple[str, str]:
    loc: tuple[int | str, ...] = tuple(error["loc"])
    kind = error["type"]
    if kind == "union_tag_not_found":
        return f"{_key(loc)}.kind", "required key is missing"
    if kind == "union_tag_invalid":
        got = error.get("input", {}).get("kind")
        return f"{_key(loc)}.kind", f"must be one of {', '.join(EVENT_KINDS)} (got {got!r})"
    if kind == "extra_forbidden":
        return _key(loc), "unknown key"
    if kind == "missing":
        return _key(loc), "required key is missing"
    got = error.get("input")
    if kind == "value_error":  # our own validators: the message without pydantic's prefix
        return _key(loc), f"{error['ctx']['error']} (got {got!r})"
    shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
    return _key(loc), f"{error['msg']}{shown}"


def _timing_problems(scenario: Scenario) -> list[tuple[str, str]]:
    problems = []
    for i, event in enumerate(scenario.events):
        if event.at_s >= scenario.duration_s:
            problems.append(
                (
                    f"events.{i}.at_s",
                    f"after the end of the scenario (duration_s = {scenario.duration_s})",
                )
            )
    return problems


def parse_scenario(data: dict[str, Any], *, source: str) -> Scenario:
    """Validate parsed TOML; raises `ConfigError` with `"<source>: <key>: <problem>"` lines."""
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        found = [_problem(dict(error)) for error in exc.errors()]
    else:
        found = _timing_problems(scenario)
        if not found:
            return scenario
    raise ConfigError([f"{source}: {key}: {problem}" for key, problem in found])


def parse_scenario_text(text: str, *, source: str) -> Scenario:
    """Parse and validate the TOML text of a scenario."""
    return parse_scenario(parse_toml(text, source=source), source=source)


def load_scenario(path: str | Path) -> Scenario:
    """The scenario in the TOML file `path`."""
    return parse_scenario(read_toml(Path(path)), source=str(path))


def builtin_scenarios() -> list[str]:
    """Names of the scenarios shipped with sessiond."""
    folder = resources.files(_BUILTIN_PACKAGE).joinpath(_BUILTIN_DIR)
    return sorted(
        entry.name.removesuffix(".toml")
        for entry in folder.iterdir()
        if entry.is_file() and entry.name.endswith(".toml")
    )


def builtin_scenario(name: str) -> Scenario:
    """A scenario shipped with sessiond (`sessiond/sim/scenarios/<name>.toml`)."""
    if not _BUILTIN_NAME.match(name) or name not in builtin_scenarios():
        known = ", ".join(builtin_scenarios())
        raise ConfigError([f"{name}: no built-in scenario of that name (known: {known})"])
    resource = resources.files(_BUILTIN_PACKAGE).joinpath(_BUILTIN_DIR).joinpath(f"{name}.toml")
    return parse_scenario_text(
        resource.read_text(encoding="utf-8"), source=f"sessiond/sim/scenarios/{name}.toml"
    )
