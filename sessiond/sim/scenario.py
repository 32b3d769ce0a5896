"""Simulator scenarios: TOML files a clinic trainer can write, validated strictly.

A scenario names a patient (resting vitals), the session's route and dose time, the devices
to serve, and a list of timed events that the simulator plays back on the device lines.
Unknown keys are errors, as in the daemon's configuration, so a mistyped event never silently
does nothing during a training session.

Event kinds (every event has `kind` and `at_s`, session seconds from the simulation start):

| kind | keys | what happens |
|---|---|---|
| `desaturation` | duration_s, spo2, ramp_s | SpO2 falls to `spo2` %, holds, recovers |
| `hypertensive_surge` | duration_s, sys, dia, ramp_s | BP climbs to `sys`/`dia` mmHg and back |
| `bradycardia` | duration_s, pr, ramp_s | the pulse slows to `pr` bpm (< 60) |
| `tachycardia` | duration_s, pr, ramp_s | the pulse quickens to `pr` bpm (> 100) |
| `low_perfusion` | duration_s, pi, ramp_s | PI falls to `pi` % (flagged below 0.4 %) |
| `sensor_off` | duration_s | the probe is off the finger: no values, sensor-off flag |
| `motion_artifact` | duration_s | the oximeter flags artifact; its numbers are noise |
| `cable_pull` | duration_s, port | the port's cable is out; it comes back at the same path |
| `silence` | duration_s, port | the device stops sending (and answering), its port open |
| `garbage` | duration_s, bytes, port | line noise before the device's next data |
| `bp_failure` | count, answer, error | the next `count` BP measurements fail |

An `[infusion]` table makes the dose at `dose_at_s` the start of an IV infusion that runs
`planned_min` minutes, with optional `pauses` (each `at_s`, `duration_s`) that stretch it; the
patient's BP/HR response then follows the infusion instead of a bolus.

Oximeter events (`sensor_off`, `motion_artifact`, `low_perfusion`) apply to every oximeter
port; `cable_pull`, `silence` and `garbage` name their port. `[devices]` maps port names to
protocols (`masimo-ascii1`, `nonin-df7`, `contec-v7`, `suntech-advantage`). The NIBP module
measures only when a host asks: a capture of `sessiond sim` alone has BP readings only with
its bench host (`--nibp-every`), and its replay then says `nibp_overdue` instead of the BP
alarms.

A `[demo]` table says how `sessiond demo` plays the scenario (`sessiond.sim.demo`): with
`anchor = "dose"` the patient is calm until a nurse marks the dose and the events follow it,
each held for the nurse until its alarm is acknowledged (`hold_max_s`); `sessiond sim` and
replay ignore it.
"""

from __future__ import annotations

import re
import zlib
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from sessiond.devices.suntech import ERROR_CODES
from sessiond.errors import ConfigError
from sessiond.model import Route
from sessiond.tomlfile import parse_toml, read_toml

if TYPE_CHECKING:
    from collections.abc import Mapping

#: Default session length: three hours.
DEFAULT_DURATION_S = 3 * 60 * 60

#: Protocols the simulator can play, by the decoder names of DESIGN §3.
OXIMETER_PROTOCOLS = ("masimo-ascii1", "nonin-df7", "contec-v7")
NIBP_PROTOCOLS = ("suntech-advantage",)
SIM_PROTOCOLS = OXIMETER_PROTOCOLS + NIBP_PROTOCOLS
#: The devices served when neither the scenario nor the caller names any.
DEFAULT_DEVICES: dict[str, str] = {"spo2": "masimo-ascii1", "nibp": "suntech-advantage"}
#: A port name, as in the daemon's `[devices.<port>]`.
PORT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")

_BUILTIN_PACKAGE = "sessiond.sim"
_BUILTIN_DIR = "scenarios"
_BUILTIN_NAME = re.compile(r"^[a-z0-9_-]{1,64}$")

SimProtocol = Literal["masimo-ascii1", "nonin-df7", "contec-v7", "suntech-advantage"]
PortName = Annotated[str, Field(pattern=PORT_NAME.pattern)]


def _dia_below_sys(v: float, info: ValidationInfo) -> float:
    sys = info.data.get("sys")
    if sys is not None and v >= sys:
        msg = f"must be below sys ({sys:g} mmHg)"
        raise ValueError(msg)
    return v


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Patient(_Strict):
    """The patient's resting vitals, around which the simulator adds breathing, drift and noise."""

    #: Resting SpO2, %.
    spo2: float = Field(default=97.5, ge=70, le=100)
    #: Resting pulse rate, bpm.
    pr: float = Field(default=72.0, ge=30, le=200)
    #: Resting perfusion index, %.
    pi: float = Field(default=3.0, ge=0.1, le=20)
    #: Breaths per minute (drives the breathing-related SpO2 swing and sinus arrhythmia).
    resp_rate_per_min: float = Field(default=14.0, ge=4, le=40)
    #: Resting systolic BP, mmHg.
    sys: float = Field(default=122.0, ge=60, le=250)
    #: Resting diastolic BP, mmHg (below `sys`).
    dia: float = Field(default=78.0, ge=30, le=150)
    #: Size of the ketamine BP/HR response: 1 typical, 0 none, 2 twice the usual rise.
    ketamine_response: float = Field(default=1.0, ge=0, le=5)

    _dia_below_sys = field_validator("dia")(_dia_below_sys)


class _Window(_Strict):
    """An event with a start and a length."""

    #: Start, session seconds.
    at_s: float = Field(ge=0)
    #: Length, seconds (ramps included where the event has them).
    duration_s: float = Field(gt=0)


class _RampedWindow(_Window):
    """A window whose value ramps in over `ramp_s` at the start and out at the end."""

    ramp_s: float = Field(default=10.0, ge=0)

    @field_validator("ramp_s")
    @classmethod
    def _ramps_fit(cls, v: float, info: ValidationInfo) -> float:
        window = info.data.get("duration_s")
        if window is not None and 2 * v > window:
            msg = f"both ramps must fit in duration_s ({window:g} s)"
            raise ValueError(msg)
        return v


class Desaturation(_RampedWindow):
    """SpO2 falls to `spo2` over `ramp_s`, holds, and recovers over `ramp_s`, within the window."""

    kind: Literal["desaturation"]
    #: Target SpO2 at the bottom of the dip, %.
    spo2: float = Field(ge=50, le=100)


class HypertensiveSurge(_RampedWindow):
    """BP climbs to `sys`/`dia` over `ramp_s`, holds, and comes back over `ramp_s`."""

    kind: Literal["hypertensive_surge"]
    #: Systolic BP at the top of the surge, mmHg.
    sys: float = Field(ge=100, le=280)
    #: Diastolic BP at the top of the surge, mmHg (below `sys`).
    dia: float = Field(ge=50, le=180)
    ramp_s: float = Field(default=120.0, ge=0)

    _dia_below_sys = field_validator("dia")(_dia_below_sys)


class Bradycardia(_RampedWindow):
    """The pulse slows to `pr` bpm over `ramp_s`, holds, and recovers."""

    kind: Literal["bradycardia"]
    #: Pulse rate at the bottom, bpm (bradycardia is below 60).
    pr: float = Field(ge=20, lt=60)
    ramp_s: float = Field(default=30.0, ge=0)


class Tachycardia(_RampedWindow):
    """The pulse quickens to `pr` bpm over `ramp_s`, holds, and recovers."""

    kind: Literal["tachycardia"]
    #: Pulse rate at the top, bpm (tachycardia is above 100).
    pr: float = Field(gt=100, le=250)
    ramp_s: float = Field(default=30.0, ge=0)


class LowPerfusion(_RampedWindow):
    """Cold hands or vasoconstriction: PI falls to `pi` and the pulse wave shrinks."""

    kind: Literal["low_perfusion"]
    #: PI at the bottom, %. Oximeters flag low perfusion below 0.4 % and, on a Masimo, a low
    #: signal IQ below 0.2 % too.
    pi: float = Field(default=0.3, ge=0.02, le=20)
    ramp_s: float = Field(default=30.0, ge=0)


class SensorOff(_Window):
    """The probe is off the finger: the oximeter sends no values and its sensor-off flag."""

    kind: Literal["sensor_off"]


class MotionArtifact(_Window):
    """The patient moves: the oximeter flags artifact and its SpO2/PR are noise, often alarming."""

    kind: Literal["motion_artifact"]


class CablePull(_Window):
    """The cable of `port` is pulled for `duration_s`, then plugged back in at the same path."""

    kind: Literal["cable_pull"]
    #: The device port whose cable is pulled.
    port: PortName = "spo2"


class Silence(_Window):
    """The device on `port` stops sending for `duration_s` (a hung device, a cable broken
    inside): its port stays open, nothing arrives, commands go unanswered."""

    kind: Literal["silence"]
    #: The device port that goes quiet.
    port: PortName = "spo2"


class Garbage(_Strict):
    """Line noise: `bytes` random bytes before the next data (or every second of a window).

    On a streaming oximeter the burst goes just before that second's data; on the silent
    NIBP line it arrives on its own at that second.
    """

    kind: Literal["garbage"]
    #: Start, session seconds.
    at_s: float = Field(ge=0)
    #: 0: one burst before the next second's data; more: a burst every second of the window.
    duration_s: float = Field(default=0.0, ge=0)
    #: Junk bytes per burst.
    bytes: int = Field(ge=1, le=4096)
    #: The device port the noise is on.
    port: PortName = "spo2"


class BpFailure(_Strict):
    """The next `count` BP measurements started at or after `at_s` fail, in the way `answer` says.

    `answer`: `error` — the module measures, says `K`, and its BP data carries the error code
    `error` (default 0x02, erratic signal); `none` — the module does not answer the start
    command at all; `ack_only` — it acknowledges (`O`) and inflates, but never says `K`.
    """

    kind: Literal["bp_failure"]
    #: From this session time on, seconds.
    at_s: float = Field(ge=0)
    #: How many measurements fail.
    count: int = Field(default=1, ge=1, le=100)
    answer: Literal["error", "none", "ack_only"] = "error"
    #: The BP data error code (with answer = "error"), e.g. 0x02 artifact, 0x57 inflate timeout.
    error: int | None = None

    @field_validator("error")
    @classmethod
    def _known_code(cls, v: int | None, info: ValidationInfo) -> int | None:
        if v is None:
            return v
        if info.data.get("answer", "error") != "error":
            msg = "only with answer = 'error'"
            raise ValueError(msg)
        if v not in ERROR_CODES:
            known = ", ".join(f"0x{code:02X}" for code in ERROR_CODES)
            msg = f"not a SunTech error code (known: {known})"
            raise ValueError(msg)
        return v

    @property
    def code(self) -> int:
        """The error code the BP data carries (answer = "error")."""
        return DEFAULT_BP_ERROR if self.error is None else self.error


#: Erratic signal: what a cuff reading spoiled by movement returns.
DEFAULT_BP_ERROR = 0x02

Event = Annotated[
    Desaturation
    | HypertensiveSurge
    | Bradycardia
    | Tachycardia
    | LowPerfusion
    | SensorOff
    | MotionArtifact
    | CablePull
    | Silence
    | Garbage
    | BpFailure,
    Field(discriminator="kind"),
]
EVENT_KINDS = (
    "desaturation",
    "hypertensive_surge",
    "bradycardia",
    "tachycardia",
    "low_perfusion",
    "sensor_off",
    "motion_artifact",
    "cable_pull",
    "silence",
    "garbage",
    "bp_failure",
)


class InfusionPause(_Strict):
    """The pump stops at `at_s` for `duration_s`, then runs on (the plan is not shortened)."""

    at_s: float = Field(ge=0)
    duration_s: float = Field(gt=0)


class ScenarioInfusion(_Strict):
    """The dose is the start of an IV infusion (DESIGN §4): it runs `planned_min` minutes of
    pump time from `dose_at_s`, longer by its pauses."""

    #: Minutes the pump runs, pauses not counted (IV protocols: 40-60 min; clinical.md §2.2).
    planned_min: float = Field(gt=0, le=240)
    pauses: tuple[InfusionPause, ...] = ()

    def running(self, start_s: float) -> list[tuple[float, float]]:
        """The (start, end) session seconds the pump runs, for an infusion from `start_s`."""
        out: list[tuple[float, float]] = []
        t, left = start_s, self.planned_min * 60.0
        for pause in self.pauses:
            out.append((t, pause.at_s))
            left -= pause.at_s - t
            t = pause.at_s + pause.duration_s
        out.append((t, t + left))
        return out

    def problems(self, start_s: float) -> list[tuple[str, str]]:
        """Pauses in order, each while the pump still runs."""
        found: list[tuple[str, str]] = []
        t, left = start_s, self.planned_min * 60.0
        for i, pause in enumerate(self.pauses):
            if not t < pause.at_s < t + left:
                where = "after the start" if i == 0 else "after the pause before it ends"
                end = f"before the infusion's end ({t + left:g} s)"
                found.append((f"infusion.pauses.{i}.at_s", f"must be {where} and {end}"))
                return found
            left -= pause.at_s - t
            t = pause.at_s + pause.duration_s
        return found


#: Events the simulator plays on a device line rather than in the patient: they keep to the
#: launch's time axis (a `[demo]` that follows the dose cannot move them).
LINE_EVENTS = (CablePull, Silence, Garbage, BpFailure)


class DemoPlay(_Strict):
    """How `sessiond demo` plays the scenario; `sessiond sim` and replay ignore it."""

    #: "dose": calm and steady until a nurse marks the dose, then each event `at_s -
    #: dose_at_s` after it; "start": `at_s` from the launch, as `sessiond sim` plays it.
    anchor: Literal["dose", "start"] = "dose"
    #: Real seconds an event that raises an alarm holds at its worst for the nurse: until that
    #: alarm is acknowledged, or this long (never shorter than written); 0 plays as written.
    hold_max_s: float = Field(default=120.0, ge=0, le=3600)


class Scenario(_Strict):
    """One simulated session: who the patient is, how the dose is given, and what happens when."""

    name: str = Field(min_length=1)
    description: str = ""
    #: Seed of every random stream of the scenario (same seed, same bytes).
    seed: int = Field(default=0, ge=0)
    #: Session length, seconds.
    duration_s: int = Field(default=DEFAULT_DURATION_S, gt=0, le=7 * 24 * 60 * 60)
    #: How the ketamine is given; sets the shape of the BP/HR response.
    route: Route = Route.IV
    #: When the dose is given, session seconds; no dose (no ketamine response) when absent.
    dose_at_s: float | None = Field(default=None, ge=0)
    #: The dose is the start of an IV infusion (None: a dose given at once).
    infusion: ScenarioInfusion | None = None
    patient: Patient = Patient()
    #: Port name → protocol; absent: `DEFAULT_DEVICES` (the caller may override both).
    devices: dict[PortName, SimProtocol] | None = None
    events: tuple[Event, ...] = ()
    #: How `sessiond demo` plays it (absent: as `sessiond sim` does, from the launch).
    demo: DemoPlay | None = None

    def rng(self, stream: int, *keys: int) -> np.random.Generator:
        """An independent random stream of the seed (one per use, so no use shifts another)."""
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(stream, *keys)))


def port_key(port: str) -> int:
    """A stable number for a port name, to key its random streams."""
    return zlib.crc32(port.encode())


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
    end = f"after the end of the scenario (duration_s = {scenario.duration_s})"
    if scenario.dose_at_s is not None and scenario.dose_at_s >= scenario.duration_s:
        problems.append(("dose_at_s", end))
    if scenario.infusion is not None:
        if scenario.dose_at_s is None:
            problems.append(("dose_at_s", "required with [infusion]: its start is the dose"))
        else:
            problems += scenario.infusion.problems(scenario.dose_at_s)
        if scenario.route is not Route.IV:
            problems.append(
                ("infusion", f"an infusion is IV (route = 'iv', got {scenario.route.value!r})")
            )
    if scenario.demo is not None and scenario.demo.anchor == "dose":
        problems += _dose_anchor_problems(scenario)
    pulled: dict[str, float] = {}
    for i, event in enumerate(scenario.events):
        if event.at_s >= scenario.duration_s:
            problems.append((f"events.{i}.at_s", end))
        if isinstance(event, CablePull):
            # In time order, a pull while the cable is still out would be a no-op.
            if event.at_s < pulled.get(event.port, -1.0):
                problems.append((f"events.{i}.at_s", f"the {event.port} cable is still out then"))
            pulled[event.port] = max(pulled.get(event.port, -1.0), event.at_s + event.duration_s)
    return problems


def _dose_anchor_problems(scenario: Scenario) -> list[tuple[str, str]]:
    """A demo that follows the dose plays the patient's events after it."""
    dose = scenario.dose_at_s
    if dose is None:
        return [("dose_at_s", "required with demo.anchor = 'dose': event times count from it")]
    problems = []
    for i, event in enumerate(scenario.events):
        if isinstance(event, LINE_EVENTS):
            why = f"{event.kind} plays on the launch's time axis only: leave it out or set"
            problems.append((f"events.{i}.kind", f"{why} demo.anchor = 'start'"))
        elif event.at_s < dose:
            why = f"before dose_at_s ({dose:g}): with demo.anchor = 'dose' the events follow"
            problems.append((f"events.{i}.at_s", f"{why} the dose"))
    return problems


def port_problems(scenario: Scenario, devices: Mapping[str, str]) -> list[tuple[str, str]]:
    """Events that name a port the simulator does not serve, as (key, problem)."""
    problems = []
    for i, event in enumerate(scenario.events):
        if isinstance(event, CablePull | Silence | Garbage) and event.port not in devices:
            known = ", ".join(devices)
            problems.append(
                (f"events.{i}.port", f"no such device {event.port!r} (devices: {known})")
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
        if scenario.devices is not None:
            found += port_problems(scenario, scenario.devices)
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


def find_scenario(spec: str | Path) -> Scenario:
    """A scenario file, or the name of a built-in one (`cable_pull`) when no such file exists."""
    path = Path(spec)
    if not path.exists() and _BUILTIN_NAME.match(str(spec)) and str(spec) in builtin_scenarios():
        return builtin_scenario(str(spec))
    return load_scenario(path)
