"""Domain types shared by every layer: readings, phases, alarms and the events on the bus.

Times called `t` are session-clock seconds (see `sessiond.clock`): the host time at which a
thing happened, already scaled by the simulation speed. Wall-clock stamps are added by the
recorder from the injected UTC clock, never by the pure layers.
"""

from __future__ import annotations

import enum
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, overload

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from datetime import datetime


class Quality(enum.IntFlag):
    """Quality flags a device reported with a reading (DESIGN §3)."""

    NONE = 0
    SENSOR_OFF = enum.auto()
    NO_SENSOR = enum.auto()
    SEARCHING = enum.auto()
    ARTIFACT = enum.auto()
    LOW_PERFUSION = enum.auto()
    LOW_SIGNAL = enum.auto()

    def names(self) -> list[str]:
        """The flags as lower-case names, in declaration order (the replay and wire form)."""
        return [f.name.lower() for f in Quality if f and f in self and f.name is not None]


#: Flags under which a physiological value must not raise or clear an alarm.
INVALID_FOR_ALARMS = Quality.SENSOR_OFF | Quality.NO_SENSOR | Quality.SEARCHING | Quality.ARTIFACT
#: Flags meaning the probe is not on a patient at all.
PROBE_OFF = Quality.SENSOR_OFF | Quality.NO_SENSOR


@dataclass(slots=True, kw_only=True)
class Reading:
    """One record decoded from a valid device frame; `None` means the device sent no value.

    A device that repeats its numerics many times a second (a Contec, a Nonin binary) gives
    one when a value or flag changes and at least once a second (DESIGN §6); its pleth goes
    as a `Waveform`.

    Treat as immutable. It is not a frozen dataclass only because frozen construction costs
    2.5x more, and a reading is made for every change of an oximeter's values.
    """

    t: float
    device: str
    spo2: int | None = None
    pr: int | None = None
    pi: float | None = None
    sys: int | None = None
    dia: int | None = None
    map: int | None = None
    flags: Quality = Quality.NONE
    device_time: datetime | None = None

    def values(self) -> dict[str, float | None]:
        """The vital values this reading carries, by their contract names."""
        return {
            "spo2": self.spo2,
            "pr": self.pr,
            "pi": self.pi,
            "sys": self.sys,
            "dia": self.dia,
            "map": self.map,
        }


class ReadingColumns(Sequence[Reading]):
    """Readings of one oximeter that a bulk decode read together (a block of a Masimo's
    lines), value by value in columns, all with the same flags. A `Reading` is made only
    when one is looked at: replay reads the columns where the monitor can take readings in
    bulk (`Monitor.take_quiet`)."""

    __slots__ = ("_device_time", "device", "flags", "pi", "pr", "spo2", "t")

    def __init__(
        self,
        *,
        device: str,
        t: Sequence[float],
        spo2: Sequence[int | None],
        pr: Sequence[int | None],
        pi: Sequence[float | None],
        flags: Quality,
        device_time: Callable[[int, int], list[datetime | None]],
    ) -> None:
        self.device = device
        self.t = t
        self.spo2 = spo2
        self.pr = pr
        self.pi = pi
        self.flags = flags
        #: The device clock of readings `start` to `stop`, worked out when asked (it is
        #: metadata only: no rule reads it).
        self._device_time = device_time

    def __len__(self) -> int:
        return len(self.t)

    @overload
    def __getitem__(self, i: int) -> Reading: ...
    @overload
    def __getitem__(self, i: slice) -> list[Reading]: ...
    def __getitem__(self, i: int | slice) -> Reading | list[Reading]:
        count = len(self.t)
        if isinstance(i, slice):
            start, stop, step = i.indices(count)
            return self.made(start, stop)[::step] if step > 0 else self.made()[i]
        if i < 0:
            i += count
        if not 0 <= i < count:
            raise IndexError(i)
        return self.made(i, i + 1)[0]

    def __iter__(self) -> Iterator[Reading]:
        return iter(self.made())

    def made(self, start: int = 0, stop: int | None = None) -> list[Reading]:
        """The readings `start` to `stop` (every one by default), made."""
        stop = len(self.t) if stop is None else stop
        device, flags = self.device, self.flags
        columns = (
            self.t[start:stop],
            self.spo2[start:stop],
            self.pr[start:stop],
            self.pi[start:stop],
            self._device_time(start, stop),
        )
        return [
            Reading(t=t, device=device, spo2=spo2, pr=pr, pi=pi, flags=flags, device_time=when)
            for t, spo2, pr, pi, when in zip(*columns, strict=True)
        ]


class ReadingParts(Sequence[Reading]):
    """Readings of one device in order, in parts: runs in columns (`ReadingColumns`) and
    readings made one by one between them."""

    __slots__ = ("_starts", "parts")

    def __init__(self, parts: list[Sequence[Reading]]) -> None:
        self.parts = [part for part in parts if part]
        self._starts: list[int] = []
        at = 0
        for part in self.parts:
            self._starts.append(at)
            at += len(part)
        self._starts.append(at)

    def __len__(self) -> int:
        return self._starts[-1]

    @overload
    def __getitem__(self, i: int) -> Reading: ...
    @overload
    def __getitem__(self, i: slice) -> list[Reading]: ...
    def __getitem__(self, i: int | slice) -> Reading | list[Reading]:
        if isinstance(i, slice):
            return list(self)[i]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        k = bisect_right(self._starts, i) - 1
        return self.parts[k][i - self._starts[k]]

    def __iter__(self) -> Iterator[Reading]:
        for part in self.parts:
            yield from part


@dataclass(frozen=True, slots=True, kw_only=True)
class Waveform:
    """Pleth samples of a device whose waveform runs apart from its readings (DESIGN §6: a
    Contec gives a reading about once a second and 60 samples a second, a Nonin binary 75),
    as they arrived at `t`. For the console's pleth; not a reading, not recorded."""

    t: float
    device: str
    pleth: tuple[int, ...]


class Phase(enum.StrEnum):
    """Session phases of DESIGN §4."""

    BASELINE = "baseline"
    ONSET = "onset"
    EFFECT = "effect"
    RECOVERY = "recovery"
    ENDED = "ended"


class Route(enum.StrEnum):
    """Ketamine administration routes; each has its own phase durations in config."""

    IV = "iv"
    IM = "im"
    INTRANASAL = "intranasal"
    ORAL = "oral"


class Priority(enum.IntEnum):
    """IEC 60601-1-8 alarm priorities, ordered so that max() picks the most urgent."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3

    @property
    def label(self) -> str:
        """The contract name (`low`, `medium`, `high`)."""
        return self.name.lower()

    @classmethod
    def from_label(cls, label: str) -> Priority:
        """The priority a configuration or message names by its label."""
        return cls[label.upper()]


class AlarmState(enum.StrEnum):
    """States an alarm transition reports (DESIGN §6)."""

    ACTIVE = "active"
    LATCHED = "latched"
    CLEARED = "cleared"


class DoseUnit(enum.StrEnum):
    """The unit of an infusion's planned or given amount."""

    MG = "mg"
    MG_PER_KG = "mg/kg"


#: The nurse actions of an infusion, as the record names them (DESIGN §4).
INFUSION_ACTIONS = ("infusion_start", "infusion_pause", "infusion_resume", "infusion_stop")


def _amount(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _unit(value: object) -> DoseUnit | None:
    return DoseUnit(value) if isinstance(value, str) and value in set(DoseUnit) else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Infusion:
    """An IV infusion (DESIGN §4): its start is the dose; paused and resumed with a reason;
    stopped with the amount given. Amounts are None when not known (a replay)."""

    started_t: float
    planned_amount: float | None = None
    unit: DoseUnit | None = None
    planned_min: float | None = None
    #: (start, end) of each pause, oldest first; the end is None while it lasts.
    pauses: tuple[tuple[float, float | None], ...] = ()
    stopped_t: float | None = None
    given_amount: float | None = None
    given_unit: DoseUnit | None = None

    @property
    def stopped(self) -> bool:
        return self.stopped_t is not None

    @property
    def paused(self) -> bool:
        return not self.stopped and bool(self.pauses) and self.pauses[-1][1] is None

    @property
    def running(self) -> bool:
        """Started, neither paused nor stopped: the drug is going in."""
        return not self.stopped and not self.paused

    def elapsed_s(self, now: float) -> float:
        """From the start to the stop (or `now`), pauses included."""
        end = now if self.stopped_t is None else self.stopped_t
        return max(0.0, end - self.started_t)

    def paused_s(self, now: float) -> float:
        """Time spent paused, up to the stop (or `now`)."""
        end = now if self.stopped_t is None else self.stopped_t
        return sum(max(0.0, min(end, now if stop is None else stop) - start)
                   for start, stop in self.pauses)  # fmt: skip

    def infused_s(self, now: float) -> float:
        """Time the infusion ran, pauses excluded."""
        return max(0.0, self.elapsed_s(now) - self.paused_s(now))

    def paused_at(self, t: float) -> Infusion:
        return replace(self, pauses=(*self.pauses, (t, None)))

    def resumed_at(self, t: float) -> Infusion:
        start, _ = self.pauses[-1]
        return replace(self, pauses=(*self.pauses[:-1], (start, t)))

    def stopped_at(self, t: float, amount: float | None, unit: DoseUnit | None) -> Infusion:
        pauses = self.pauses
        if self.paused:
            pauses = (*pauses[:-1], (pauses[-1][0], t))
        return replace(self, pauses=pauses, stopped_t=t, given_amount=amount, given_unit=unit)

    @classmethod
    def fold(cls, infusion: Infusion | None, action: NurseAction) -> Infusion | None:
        """The infusion after one recorded nurse action (the console, MQTT and a resume read
        it back this way); an action that does not apply leaves it as it was."""
        d = action.detail
        match action.action:
            case "infusion_start":
                return cls(
                    started_t=action.t,
                    planned_amount=_amount(d.get("planned_amount")),
                    unit=_unit(d.get("unit")),
                    planned_min=_amount(d.get("planned_min")),
                )
            case "infusion_pause" if infusion is not None and infusion.running:
                return infusion.paused_at(action.t)
            case "infusion_resume" if infusion is not None and infusion.paused:
                return infusion.resumed_at(action.t)
            case "infusion_stop" if infusion is not None and not infusion.stopped:
                amount, unit = _amount(d.get("given_amount")), _unit(d.get("unit"))
                return infusion.stopped_at(action.t, amount, unit)
            case _:
                return infusion


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionStarted:
    """A nurse started a session; `session_id` is random and names no patient.

    `resumed` marks a restarted daemon taking up a session from its record, with the
    dose (if any) already given at `dose_t`.
    """

    t: float
    session_id: str
    route: Route
    user: str
    resumed: bool = False
    dose_t: float | None = None
    #: For a resumed session: whether the dose overrode the BP gate, and its notes so far.
    dose_override: bool = False
    notes: int = 0
    #: For a resumed session: its infusion as the record holds it.
    infusion: Infusion | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PhaseChanged:
    """The session entered `phase` at `t`."""

    t: float
    phase: Phase


@dataclass(frozen=True, slots=True, kw_only=True)
class AlarmTransition:
    """An alarm was raised, changed priority, latched or cleared.

    `device` names the device of a technical alarm. `restored` marks an alarm shown again
    when a restarted daemon resumes its session (the record holds it already), with
    `acknowledged` saying whether its audio had been acknowledged.
    """

    t: float
    alarm_id: str
    priority: Priority
    state: AlarmState
    phase: Phase | None = None
    value: float | None = None
    limit: float | None = None
    device: str | None = None
    restored: bool = False
    acknowledged: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class NurseAction:
    """Something a user did (start, dose, acknowledge, note ...), attributed to that user."""

    t: float
    action: str
    user: str
    source: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceStatus:
    """A device link opened or was lost (technical events; `device_lost` is raised from these)."""

    t: float
    device: str
    connected: bool
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class NibpRequest:
    """The monitor asks the BP module to measure now (`reason`: schedule, dose+40, alarm, nurse)."""

    t: float
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NibpFailed:
    """A BP measurement failed: an error code, an abort or error reply, or no result in time."""

    t: float
    device: str
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AudioPause:
    """Alarm audio paused (every alarm) until `until_t`, or resumed (`reason` says why)."""

    t: float
    paused: bool
    until_t: float | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class BaselineCaptured:
    """The pre-dose baseline, fixed when the dose is marked (None: not enough readings)."""

    t: float
    sys: float | None
    dia: float | None
    spo2: float | None
    pr: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordGap:
    """Nothing was monitored or recorded from `since_t` to `t` (the daemon was down)."""

    t: float
    since_t: float
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DischargeReadiness:
    """Whether the patient meets the discharge criteria now; `unmet` says which are not met."""

    t: float
    ready: bool
    unmet: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomChanged:
    """The room's set and setting changed: the scene applied, its lights and its music.

    `override` is `alarm` while a high alarm holds clinical light, `manual` after a nurse's
    change (until the next phase unless `pinned`), else None.
    """

    t: float
    scene: str
    light_pct: float
    colour_temp_k: int
    playlist: str
    volume_pct: int
    ducked: bool = False
    override: str | None = None
    pinned: bool = False
    source: str = "phase"


#: What the infusion prompt advises (DESIGN §4): advice to the nurse, never a pump action.
INFUSION_ADVICE = "pause the infusion / notify the prescriber"


@dataclass(frozen=True, slots=True, kw_only=True)
class InfusionPrompt:
    """A confirmed critical BP (`bp_high` high) while an infusion runs: the nurse is prompted
    to pause it and notify the prescriber (`INFUSION_ADVICE`). Advice only; sessiond never
    acts on a pump. `active` False: the prompt went away (`reason`: paused, stopped, alarm
    no longer high)."""

    t: float
    active: bool
    #: The BP readings (t, SYS, DIA) that confirmed the alarm, oldest first.
    readings: tuple[tuple[float, float, float], ...] = ()
    reason: str = ""


Event = (
    Reading
    | Waveform
    | SessionStarted
    | PhaseChanged
    | AlarmTransition
    | NurseAction
    | DeviceStatus
    | NibpRequest
    | NibpFailed
    | AudioPause
    | BaselineCaptured
    | DischargeReadiness
    | RoomChanged
    | RecordGap
    | InfusionPrompt
)
