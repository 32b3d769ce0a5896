"""The demo's patient: calm until a nurse doses, the scenario's events after it, calm after.

`sessiond demo` plays a scenario whose `[demo]` table says `anchor = "dose"` this way:

- Before a session's dose the patient is calm and steady: resting vitals with their drift,
  breathing and noise, and no events. When a nurse marks the dose (or starts an infusion, which
  is the dose), the ketamine response begins, shaped for the session's route, and each event
  plays `at_s - dose_at_s` after it.
- An event that raises an alarm (`HOLDS_FOR`) holds at its worst (SpO2 at the bottom of a
  desaturation, the probe off) until a nurse acknowledges that alarm, or `hold_max_s` of real
  time passes, then recovers over its ramp: the patient responds to the nurse stepping in. The
  script waits meanwhile: later events move back by as long as the hold outlasted its written
  length. An event whose alarm has not come when its written hold ends plays as written.
- Ending the session lets what is under way recover and drops what has not begun. Once the
  script is done the patient stays calm for as long as the demo runs, and so do the devices.

Without `[demo]` (or with `anchor = "start"`) the scenario plays as `sessiond sim` plays it,
from the launch, and then the patient stays calm the same way.

Every change applies from the next session second on: what the devices have sent is never
rewritten. The patient's arrays cover `EPOCH_S` from their origin and move along before the
clock reaches their end, the new stretch's noise blended in over `BLEND_S`, so the demo plays
on in bounded memory however long it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from sessiond.model import (
    AlarmState,
    AlarmTransition,
    NurseAction,
    Phase,
    PhaseChanged,
    Route,
    SessionStarted,
)
from sessiond.sim.oximetry import OximeterTrack, oximeter_track
from sessiond.sim.physiology import Vitals, simulate_patient
from sessiond.sim.scenario import (
    LINE_EVENTS,
    Bradycardia,
    Desaturation,
    HypertensiveSurge,
    LowPerfusion,
    MotionArtifact,
    SensorOff,
    Tachycardia,
)

if TYPE_CHECKING:
    import numpy.typing as npt

    from sessiond.bus import Subscription
    from sessiond.clock import LoopClock
    from sessiond.model import Event as BusEvent
    from sessiond.sim.scenario import Scenario, ScenarioInfusion
    from sessiond.sim.simulator import Simulator

logger = logging.getLogger(__name__)

#: The alarm each patient event raises with the default limits: the event holds for it.
HOLDS_FOR: dict[type, str] = {
    Desaturation: "spo2_low",
    Bradycardia: "pr_low",
    Tachycardia: "pr_high",
    HypertensiveSurge: "bp_high",
    SensorOff: "sensor_off",
    MotionArtifact: "signal_poor",
    LowPerfusion: "signal_poor",
}
_RAMPED = (Desaturation, HypertensiveSurge, Bradycardia, Tachycardia, LowPerfusion)
#: The events the patient model plays, which a demo that follows the dose moves and holds.
PatientEvent = (
    Desaturation
    | HypertensiveSurge
    | Bradycardia
    | Tachycardia
    | LowPerfusion
    | SensorOff
    | MotionArtifact
)
#: What the demo listens to on the daemon's bus.
BUS_EVENTS: tuple[type, ...] = (SessionStarted, NurseAction, AlarmTransition, PhaseChanged)

#: Session seconds of patient the arrays hold at a time (2 h: ~1 MB, ~6 ms to compute).
EPOCH_S = 2 * 3600
#: The arrays move along when less than this is left ahead: 30 session minutes, or 10 s of
#: real time at high speed, whichever is longer (at most half an epoch).
AHEAD_S = 1800
AHEAD_REAL_S = 10.0
#: The new stretch's drift and noise take over from the old over this long (session s).
BLEND_S = 120
#: Seconds before now kept in the new arrays (a device a little behind still finds them).
KEEP_S = 60
#: Each stretch draws its noise from its own seed: the scenario's plus this much a stretch.
EPOCH_SEED_STEP = 1_000_003
#: Real seconds an event waits past its written hold for its alarm to reach the demo (a busy
#: event loop at high speed); one whose alarm has not come by then plays as written.
ALARM_GRACE_REAL_S = 1.0


@dataclass(kw_only=True)
class _Item:
    """One patient event of the script and what became of it in this session."""

    event: PatientEvent
    #: The alarm it holds for (None: it plays as written).
    alarm: str | None
    #: Session time it began (None: not placed yet).
    start: float | None = None
    #: Session time its hold ends (None: open, at most until `deadline`).
    release: float | None = None
    #: Its alarm went active since it began.
    alarmed: bool = False
    #: Dropped: the session ended before it began.
    dropped: bool = False

    @property
    def ramp(self) -> float:
        return self.event.ramp_s if isinstance(self.event, _RAMPED) else 0.0

    @property
    def bottom(self) -> float:
        """When it is at its worst (session s)."""
        assert self.start is not None
        return self.start + self.ramp

    @property
    def written_release(self) -> float:
        """When its written hold ends and it starts to recover (session s)."""
        assert self.start is not None
        return self.start + self.event.duration_s - self.ramp

    @property
    def holding(self) -> bool:
        """Placed, held for its alarm, and not released."""
        return self.start is not None and self.alarm is not None and self.release is None


@dataclass(frozen=True, slots=True)
class _Blend:
    """The arrays before a move, blended into the new ones over [at, at + BLEND_S)."""

    vitals: Vitals
    origin: int
    at: int


class DemoDirector:
    """Plays `scenario` on `simulator` as the demo's session goes (see the module docstring).

    Create it before the simulator runs; `run(subscription)` follows the daemon's bus
    (`BUS_EVENTS`) and keeps the patient's arrays ahead of the clock until cancelled.
    """

    def __init__(self, *, scenario: Scenario, simulator: Simulator, clock: LoopClock) -> None:
        self.scenario = scenario
        self.simulator = simulator
        self.clock = clock
        demo = scenario.demo
        self.follows_dose = demo is not None and demo.anchor == "dose"
        #: Session seconds an unacknowledged event holds at most (0: no holds).
        self.hold_max_s = (
            clock.session_seconds(demo.hold_max_s) if demo is not None and self.follows_dose else 0
        )
        self.route: Route = scenario.route
        #: The session time of the dose the script follows (None: calm, no dose yet).
        self.dose_t: float | None = None
        self.items: list[_Item] = []
        #: Session time = script time + offset, for what is placed next.
        self._offset = 0.0
        #: When the script last went on after a hold (overlapping holds pause it once).
        self._resumed_at = -math.inf
        self._epoch = 0
        self._blend: _Blend | None = None
        self._wake = asyncio.Event()
        if self.follows_dose:
            self.origin = 0
            self._apply(now=0.0, at=0)  # calm from the start
        else:
            # As `sessiond sim` plays it: the simulator's own arrays, until they run out.
            self.origin = simulator.session.origin

    # The bus ---------------------------------------------------------------------------------

    def on_event(self, event: BusEvent) -> None:
        """A session event from the daemon's bus: the patient follows it."""
        now = self.clock.now()
        match event:
            case SessionStarted(route=route, dose_t=dose_t, resumed=resumed):
                self.route = route
                if resumed and dose_t is not None and self.follows_dose:
                    self._dosed(now, dose_t=dose_t, resumed=True)
            case NurseAction(action="dose", t=t) if self.follows_dose:
                self._dosed(now, dose_t=t)
            case NurseAction(action="ack", detail=detail):
                self._acknowledged(now, str(detail.get("alarm_id")))
            case AlarmTransition(alarm_id=alarm_id, state=AlarmState.ACTIVE, restored=False):
                for item in self.items:
                    if item.holding and item.alarm == alarm_id and now >= (item.start or 0.0):
                        item.alarmed = True
            case PhaseChanged(phase=Phase.ENDED):
                self._ended(now)
            case _:
                pass
        self._wake.set()

    async def run(self, events: Subscription) -> None:
        """Follow `events` and keep time (holds that run out, arrays that move along)."""
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._follow(events), name="sessiond.demo.bus")
                tg.create_task(self._keep_time(), name="sessiond.demo.timer")
        except Exception:
            # The devices play on from the arrays they have; monitoring is not affected.
            logger.exception("demo: the simulated patient stopped following the session")

    async def _follow(self, events: Subscription) -> None:
        async for event in events:
            self.on_event(event)

    async def _keep_time(self) -> None:
        while True:
            now = self.clock.now()
            self.tick(now)
            due = self.next_due()
            self._wake.clear()
            if math.isinf(due):
                await self._wake.wait()
                continue
            with contextlib.suppress(TimeoutError):
                async with self.clock.timeout(due - now):
                    await self._wake.wait()

    # Time ------------------------------------------------------------------------------------

    def next_due(self) -> float:
        """When `tick` has something to do (session s)."""
        due = self._move_due()
        for item in self.items:
            if item.holding:
                due = min(due, self._deadline(item) if item.alarmed else self._no_alarm(item))
        return due

    def tick(self, now: float) -> None:
        """Release the holds that are over, and move the arrays along when they run short."""
        changed = False
        for item in self.items:
            if not item.holding:
                continue
            if not item.alarmed and now >= self._no_alarm(item):
                changed |= self._release(item, now, why="no alarm", late=self._no_alarm(item))
            elif now >= self._deadline(item):
                changed |= self._release(item, now, why="not acknowledged in time")
        if changed:
            self._replan(now)
        if now >= self._move_due():
            self._move(now)

    def _no_alarm(self, item: _Item) -> float:
        """When an event whose alarm has not come goes on as written."""
        return item.written_release + self.clock.session_seconds(ALARM_GRACE_REAL_S)

    def _deadline(self, item: _Item) -> float:
        """The longest an unacknowledged hold lasts: never shorter than written."""
        written = item.event.duration_s - 2 * item.ramp
        return item.bottom + max(written, self.hold_max_s)

    def _ahead_s(self) -> float:
        return min(EPOCH_S / 2, max(AHEAD_S, self.clock.session_seconds(AHEAD_REAL_S)))

    def _move_due(self) -> float:
        return self.origin + len(self.simulator.session.vitals) - self._ahead_s()

    # The session -----------------------------------------------------------------------------

    def _dosed(self, now: float, *, dose_t: float, resumed: bool = False) -> None:
        dose_at = self.scenario.dose_at_s
        assert dose_at is not None  # validated with anchor = "dose"
        self.dose_t = dose_t
        self._offset = dose_t - dose_at
        self._resumed_at = -math.inf
        hold = self.hold_max_s > 0
        self.items = [
            _Item(event=event, alarm=HOLDS_FOR.get(type(event)) if hold else None)
            for event in sorted(self.scenario.events, key=lambda e: e.at_s)
            if not isinstance(event, LINE_EVENTS)  # validated out with anchor = "dose"
        ]
        if resumed:  # a restarted daemon: what would have begun before now is past
            for item in self.items:
                item.dropped = item.event.at_s + self._offset < now
        logger.info("demo: the patient follows the dose at %.0f s; %s", dose_t, self._script())
        self._replan(now)

    def _acknowledged(self, now: float, alarm_id: str) -> None:
        changed = False
        for item in self.items:
            if item.holding and item.alarm == alarm_id and now >= (item.start or math.inf):
                changed |= self._release(item, now, why=f"{alarm_id} acknowledged")
        if changed:
            self._replan(now)

    def _ended(self, now: float) -> None:
        """The session ended: what is under way recovers, what has not begun is dropped."""
        for item in self.items:
            if item.start is None:
                item.dropped = True
            elif item.holding:
                self._release(item, now, why="the session ended")
        self._replan(now)

    def _release(self, item: _Item, now: float, *, why: str, late: float | None = None) -> bool:
        """End `item`'s hold from the next second on; the script waits as long as it held
        beyond its written hold (or beyond `late`, the grace its alarm had)."""
        release = max(item.bottom, float(math.floor(now) + 1))
        item.release = release
        held_over = release - max(late or item.written_release, self._resumed_at)
        if held_over > 0:
            self._offset += held_over
        self._resumed_at = max(self._resumed_at, release)
        logger.info("demo: %s recovers (%s)", item.event.kind, why)
        return True

    def _place(self, now: float) -> None:
        """Place the events that no hold keeps waiting, in script order."""
        for item in self.items:
            if item.start is not None or item.dropped:
                continue
            at = item.event.at_s
            waiting = [
                h for h in self.items if h.holding and at >= h.event.at_s + h.event.duration_s
                - h.ramp
            ]  # fmt: skip
            if waiting:
                return
            # Never in the past: a hold released late has moved the rest back already.
            item.start = max(at + self._offset, float(math.floor(now) + 1))

    def _script(self) -> str:
        parts = []
        for item in self.items:
            after = item.event.at_s - (self.scenario.dose_at_s or 0.0)
            hold = f", held for {item.alarm}" if item.alarm else ""
            parts.append(f"{item.event.kind} at +{after:.0f} s{hold}")
        return "; ".join(parts) or "no events"

    # The arrays ------------------------------------------------------------------------------

    def _replan(self, now: float) -> None:
        self._place(now)
        self._apply(now=now, at=math.floor(now) + 1)

    def _move(self, now: float) -> None:
        """Move the arrays along: a new stretch from a little before now, blended in."""
        session = self.simulator.session
        at = math.floor(now) + 1
        self._blend = _Blend(vitals=session.vitals, origin=session.origin, at=at)
        self._epoch += 1
        self.origin = max(0, at - KEEP_S)
        self._apply(now=now, at=at)
        logger.debug("demo: patient arrays now from %d s", self.origin)

    def _plan(self) -> Scenario:
        """The scenario as it plays in the current arrays' own seconds (0 = `origin`)."""
        o = self.origin
        s = self.scenario
        update: dict[str, object] = {
            "seed": s.seed + self._epoch * EPOCH_SEED_STEP,
            "duration_s": EPOCH_S,
            "route": self.route,
        }
        if not self.follows_dose:
            # As written, on the launch's axis: only the origin moves.
            update["events"] = tuple(e.model_copy(update={"at_s": e.at_s - o}) for e in s.events)
            update["dose_at_s"] = None if s.dose_at_s is None else s.dose_at_s - o
            update["infusion"] = _shifted_infusion(s, -o)
            return s.model_copy(update=update)
        events = []
        for item in self.items:
            if item.start is None or item.dropped:
                continue
            event = item.event
            end = item.release if item.release is not None else None
            if item.alarm is not None and item.release is None:
                end = self._deadline(item)
            length = event.duration_s if end is None else end - item.start + item.ramp
            events.append(event.model_copy(update={"at_s": item.start - o, "duration_s": length}))
        update["events"] = tuple(events)
        if self.dose_t is None:
            update["dose_at_s"] = None
            update["infusion"] = None
        else:
            update["dose_at_s"] = self.dose_t - o
            update["infusion"] = _shifted_infusion(s, self.dose_t - (s.dose_at_s or 0.0) - o)
        return s.model_copy(update=update)

    def _apply(self, *, now: float, at: int) -> None:
        """Compute the plan and play it from session second `at` on (before it: unchanged)."""
        plan = self._plan()
        vitals = simulate_patient(plan)
        if self._blend is not None:
            b = self._blend
            if now < b.at + BLEND_S:
                vitals = splice(b.vitals, b.origin, vitals, self.origin, at=b.at, blend_s=BLEND_S)
            else:
                self._blend = None
        session = self.simulator.session
        old_vitals, old_track, old_origin = session.vitals, session.track, session.origin
        if at > self.origin:
            vitals = splice(old_vitals, old_origin, vitals, self.origin, at=at, blend_s=0)
        track = oximeter_track(plan, vitals)
        if at > self.origin:
            track = splice_track(old_track, old_origin, track, self.origin, at=at)
        self.simulator.set_patient(vitals=vitals, track=track, origin=self.origin)


def _shifted_infusion(scenario: Scenario, by: float) -> ScenarioInfusion | None:
    """The scenario's infusion with its pauses moved `by` seconds (None without one)."""
    infusion = scenario.infusion
    if infusion is None:
        return None
    pauses = tuple(p.model_copy(update={"at_s": p.at_s + by}) for p in infusion.pauses)
    return infusion.model_copy(update={"pauses": pauses})


def _overlap(old_origin: int, old_len: int, origin: int, lo: int, hi: int) -> tuple[int, int]:
    """The session seconds in [lo, hi) that the old arrays hold."""
    return max(lo, old_origin, origin), min(hi, old_origin + old_len)


def splice(
    old: Vitals, old_origin: int, new: Vitals, origin: int, *, at: int, blend_s: int
) -> Vitals:
    """`new` (element 0 = session second `origin`) with `old`'s values before second `at`,
    a linear blend from old to new over `blend_s` seconds from it, and heartbeats counted
    on without a jump (the pleth waveform follows them)."""
    n = len(new)
    fields: dict[str, npt.NDArray[np.float64]] = {
        name: getattr(new, name).astype(np.float64)
        for name in ("spo2", "pr", "pi", "sys", "dia", "beats", "breath")
    }
    lo, hi = _overlap(old_origin, len(old), origin, origin, at)
    if hi > lo:
        here, there = slice(lo - origin, hi - origin), slice(lo - old_origin, hi - old_origin)
        for name, values in fields.items():
            values[here] = getattr(old, name)[there]
    lo, hi = _overlap(old_origin, len(old), origin, at, min(at + blend_s, origin + n))
    if hi > lo:
        here, there = slice(lo - origin, hi - origin), slice(lo - old_origin, hi - old_origin)
        w = (np.arange(lo, hi) - at + 1) / (blend_s + 1)  # the new values' weight
        for name in ("spo2", "pr", "pi", "sys", "dia", "breath"):
            values = fields[name]
            values[here] = (1 - w) * getattr(old, name)[there] + w * values[here]
    pr = np.rint(fields["pr"]).astype(np.int64)
    a = at - origin
    if 0 <= a < n - 1 and old_origin <= at < old_origin + len(old):
        beats = fields["beats"]
        beats[a] = old.beats[at - old_origin]
        beats[a + 1 :] = beats[a] + np.cumsum(pr[a:-1] / 60.0)
    return Vitals(
        spo2=np.rint(fields["spo2"]).astype(np.int64),
        pr=pr,
        pi=np.round(fields["pi"], 2),
        sys=np.rint(fields["sys"]).astype(np.int64),
        dia=np.rint(fields["dia"]).astype(np.int64),
        beats=fields["beats"],
        breath=fields["breath"],
    )


def splice_track(
    old: OximeterTrack, old_origin: int, new: OximeterTrack, origin: int, *, at: int
) -> OximeterTrack:
    """`new` with `old`'s values before session second `at` (what was sent stays sent)."""
    lo, hi = _overlap(old_origin, len(old), origin, origin, at)
    if hi <= lo:
        return new
    here, there = slice(lo - origin, hi - origin), slice(lo - old_origin, hi - old_origin)
    parts = {}
    for name in ("spo2", "pr", "pi", "sensor_off", "artifact"):
        values = getattr(new, name).copy()
        values[here] = getattr(old, name)[there]
        parts[name] = values
    return replace(new, **parts)
