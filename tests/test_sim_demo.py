"""The demo's patient follows the session: calm until the dose, the script after it, held for
the nurse, calm after; its arrays move along forever and never rewrite what was sent.

These drive `DemoDirector` by hand (its bus events and its clock) on the built-in demo
scenario, and read the arrays the simulator's devices play from.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import numpy as np
import pytest

from sessiond.clock import LoopClock
from sessiond.config import ConfigError
from sessiond.model import (
    AlarmState,
    AlarmTransition,
    NurseAction,
    Phase,
    PhaseChanged,
    Priority,
    Route,
    SessionStarted,
)
from sessiond.sim.demo import BLEND_S, EPOCH_S, DemoDirector
from sessiond.sim.physiology import KETAMINE_RESPONSE
from sessiond.sim.scenario import builtin_scenario, parse_scenario_text
from sessiond.sim.simulator import Simulator

if TYPE_CHECKING:
    from collections.abc import Iterator

SPEED = 60.0
HOLD_S = 120 * SPEED  # the demo's hold_max_s (2 real minutes) in session seconds
DOSE = 1000.0
# demo.toml: the dip 80 s after the dose (10 s ramps, 80 s long), the probe off at +600 s.
DIP, DIP_RAMP, DIP_LEN, OFF = DOSE + 80, 10.0, 80.0, DOSE + 600


class ManualClock(LoopClock):
    """The session clock, moved by the test."""

    def __init__(self, *, speed: float, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(speed=speed, loop=loop)
        self.t = 0.0

    def now(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Iterator[ManualClock]:
    loop = asyncio.new_event_loop()
    try:
        yield ManualClock(speed=SPEED, loop=loop)
    finally:
        loop.close()


@pytest.fixture
def demo(clock: ManualClock) -> DemoDirector:
    scenario = builtin_scenario("demo")
    simulator = Simulator(scenario=scenario, clock=clock)  # no ports: nothing is played
    return DemoDirector(scenario=scenario, simulator=simulator, clock=clock)


def at(demo: DemoDirector, name: str, t: float) -> float:
    """What the oximeter's track (or the BP) says at session second `t`."""
    session = demo.simulator.session
    arrays = session.vitals if name in {"sys", "dia"} else session.track
    return float(getattr(arrays, name)[session.index(int(t))])


def snapshot(demo: DemoDirector) -> dict[str, np.ndarray]:
    s = demo.simulator.session
    return {
        "origin": np.array([s.origin]),
        "spo2": s.track.spo2.copy(),
        "off": s.track.sensor_off.copy(),
        "sys": s.vitals.sys.copy(),
        "beats": s.vitals.beats.copy(),
    }


def same_before(before: dict[str, np.ndarray], demo: DemoDirector, t: float) -> bool:
    """The arrays hold the same values as `before` for every second before `t`."""
    s = demo.simulator.session
    shift = s.origin - int(before["origin"][0])
    n = int(t) - s.origin
    now = {"spo2": s.track.spo2, "off": s.track.sensor_off, "sys": s.vitals.sys,
           "beats": s.vitals.beats}  # fmt: skip
    return all(
        np.array_equal(now[k][:n], before[k][shift : shift + n]) for k in ("spo2", "off", "sys")
    ) and np.allclose(now["beats"][:n], before["beats"][shift : shift + n])


def start_and_dose(demo: DemoDirector, clock: ManualClock, *, at_t: float = DOSE) -> None:
    clock.t = at_t - 300
    demo.on_event(SessionStarted(t=clock.t, session_id="s", route=Route.IV, user="nurse"))
    clock.t = at_t
    demo.on_event(NurseAction(t=at_t, action="dose", user="nurse", source="console"))


def raised(demo: DemoDirector, clock: ManualClock, alarm_id: str, t: float) -> None:
    clock.t = t
    demo.on_event(AlarmTransition(t=t, alarm_id=alarm_id, priority=Priority.MEDIUM,
                                  state=AlarmState.ACTIVE))  # fmt: skip


def acknowledged(demo: DemoDirector, clock: ManualClock, alarm_id: str, t: float) -> None:
    clock.t = t
    demo.on_event(NurseAction(t=t, action="ack", user="nurse", source="console",
                              detail={"alarm_id": alarm_id}))  # fmt: skip


def run_to(demo: DemoDirector, clock: ManualClock, t: float) -> None:
    """Move the clock to `t`, ticking the director at each time it is due on the way."""
    while (due := demo.next_due()) <= t:
        clock.t = max(clock.t, due)
        demo.tick(clock.t)
    clock.t = t
    demo.tick(t)


def test_the_patient_is_calm_and_steady_until_the_dose(demo: DemoDirector) -> None:
    """Before any session: resting vitals with their drift and noise, no event at all."""
    track = demo.simulator.session.track
    assert len(track) == EPOCH_S
    assert not track.sensor_off.any()
    assert not track.artifact.any()
    assert track.spo2.min() >= 94
    assert (
        90
        <= demo.simulator.session.vitals.sys.min()
        < demo.simulator.session.vitals.sys.max()
        < 150
    )
    assert demo.next_due() > 3600  # nothing to do but move the arrays along, much later


def test_the_events_and_the_ketamine_response_follow_the_real_dose(
    demo: DemoDirector, clock: ManualClock
) -> None:
    calm = snapshot(demo)
    start_and_dose(demo, clock)
    assert same_before(calm, demo, DOSE + 1)  # nothing sent before the dose changes
    # The dip comes 80 s after the dose (at_s - dose_at_s), not 680 s after the launch.
    assert at(demo, "spo2", DIP - 1) >= 94
    assert max(at(demo, "spo2", t) for t in range(int(DIP + DIP_RAMP), int(DIP + 60))) <= 89
    # The BP/HR response starts at the dose: its peak 35 min after, on top of the calm values.
    peak = int(DOSE + KETAMINE_RESPONSE[Route.IV].peak_min * 60)
    rise = at(demo, "sys", peak) - float(calm["sys"][peak])
    assert rise == pytest.approx(KETAMINE_RESPONSE[Route.IV].sys_mmhg, abs=1)
    assert at(demo, "sys", DOSE - 1) == float(calm["sys"][int(DOSE - 1)])


def test_an_alarming_event_holds_until_the_nurse_acknowledges_it(
    demo: DemoDirector, clock: ManualClock
) -> None:
    start_and_dose(demo, clock)
    raised(demo, clock, "spo2_low", DIP + 23)
    run_to(demo, clock, DIP + 2000)  # long past the dip's written 60 s at the bottom
    assert at(demo, "spo2", DIP + 1999) <= 89
    assert not at(demo, "sensor_off", OFF + 10)  # the script waits for the nurse
    before = snapshot(demo)
    acknowledged(demo, clock, "spo2_low", DIP + 2000.4)
    release = DIP + 2001
    assert same_before(before, demo, release)  # what the devices sent stays as it was
    assert at(demo, "spo2", release) <= 89
    assert at(demo, "spo2", release + DIP_RAMP + 5) >= 94  # back up over its ramp
    # The probe comes off as long after the recovery as it was written to (the script
    # waited while the dip held beyond its written end).
    written_release = DIP + DIP_LEN - DIP_RAMP
    off = OFF + (release - written_release)
    assert not at(demo, "sensor_off", off - 1)
    assert at(demo, "sensor_off", off)
    # The probe stays off until its alarm is acknowledged too, then it is back on.
    raised(demo, clock, "sensor_off", off + 5)
    run_to(demo, clock, off + 300)
    assert at(demo, "sensor_off", off + 299)
    acknowledged(demo, clock, "sensor_off", off + 300)
    assert not at(demo, "sensor_off", off + 302)
    # The script is done: calm from then on.
    run_to(demo, clock, off + 2000)
    assert not any(item.holding for item in demo.items)
    assert demo.next_due() > off + 2000


def test_an_unacknowledged_hold_ends_after_two_real_minutes(
    demo: DemoDirector, clock: ManualClock
) -> None:
    start_and_dose(demo, clock)
    raised(demo, clock, "spo2_low", DIP + 23)
    bottom = DIP + DIP_RAMP
    run_to(demo, clock, bottom + HOLD_S - 5)
    assert at(demo, "spo2", bottom + HOLD_S - 6) <= 89
    # Held this long at the bottom, SpO2 stays below 90 % and never reaches the high limit
    # (below 85 %): `spo2_low` stays medium, as the scenario promises.
    s = demo.simulator.session
    held = s.track.spo2[s.index(int(bottom)) : s.index(int(bottom + HOLD_S))]
    assert 85 <= held.min() <= held.max() < 90
    run_to(demo, clock, bottom + HOLD_S + 1)
    assert at(demo, "spo2", bottom + HOLD_S + DIP_RAMP + 5) >= 94


def test_an_event_whose_alarm_does_not_come_plays_as_written(
    demo: DemoDirector, clock: ManualClock
) -> None:
    """No `spo2_low` reaches the demo (another limit, say): the dip ends as written, after
    a short grace for an alarm on its way."""
    start_and_dose(demo, clock)
    written_release = DIP + DIP_LEN - DIP_RAMP
    run_to(demo, clock, written_release + 2 * SPEED)
    assert at(demo, "spo2", written_release + 2 * SPEED + DIP_RAMP + 5) >= 94
    offs = np.flatnonzero(demo.simulator.session.track.sensor_off)
    assert offs.size
    assert OFF <= offs[0] + demo.simulator.session.origin <= OFF + 2  # as written


def test_ending_the_session_recovers_and_drops_what_has_not_begun(
    demo: DemoDirector, clock: ManualClock
) -> None:
    start_and_dose(demo, clock)
    raised(demo, clock, "spo2_low", DIP + 23)
    clock.t = DIP + 300
    demo.on_event(PhaseChanged(t=clock.t, phase=Phase.ENDED))
    assert at(demo, "spo2", DIP + 301 + DIP_RAMP + 5) >= 94
    assert not demo.simulator.session.track.sensor_off.any()
    # A new session's dose plays the script again, from that dose.
    start_and_dose(demo, clock, at_t=DIP + 3000)
    assert at(demo, "spo2", DIP + 3000 + 80 + DIP_RAMP + 5) <= 89


def test_a_resumed_session_follows_its_dose_without_replaying_the_past(
    demo: DemoDirector, clock: ManualClock
) -> None:
    """A restarted daemon resumes a session dosed 5 min ago: the dip (at +80 s) is past."""
    clock.t = DOSE + 300
    demo.on_event(SessionStarted(t=clock.t, session_id="s", route=Route.IV, user="sessiond",
                                 resumed=True, dose_t=DOSE))  # fmt: skip
    track = demo.simulator.session.track
    assert track.spo2[demo.simulator.session.index(int(DOSE + 310)) :].min() >= 94
    assert at(demo, "sensor_off", OFF + 1)  # the probe still comes off at +600 s


def test_the_arrays_move_along_for_ever_without_a_jump(
    demo: DemoDirector, clock: ManualClock
) -> None:
    start_and_dose(demo, clock)
    raised(demo, clock, "spo2_low", DIP + 23)
    acknowledged(demo, clock, "spo2_low", DIP + 40)
    raised(demo, clock, "sensor_off", OFF + 5)
    acknowledged(demo, clock, "sensor_off", OFF + 8)
    session = demo.simulator.session
    for _ in range(12):  # a day of session time
        before = snapshot(demo)
        end = session.origin + len(session.track)
        move = demo.next_due()
        assert move <= end - 1800  # well before the arrays run out
        run_to(demo, clock, move)
        assert session.origin > int(before["origin"][0])
        assert len(session.track) == EPOCH_S  # bounded, however long the demo runs
        assert session.origin + len(session.track) > clock.t + 3600
        assert same_before(before, demo, clock.t + 1)
        # The new stretch takes over smoothly: no step in SpO2, the pulse or the BP.
        k = session.index(int(clock.t))
        window = slice(k - 5, k + BLEND_S + 5)
        assert np.abs(np.diff(session.vitals.sys[window])).max() <= 2
        assert np.abs(np.diff(session.track.spo2[window])).max() <= 2
        beats = np.diff(session.vitals.beats[window])
        assert np.allclose(beats, session.vitals.pr[window][:-1] / 60.0)
    assert not session.track.sensor_off[session.index(int(clock.t)) :].any()
    assert session.track.spo2[session.index(int(clock.t)) :].min() >= 93


@pytest.mark.parametrize(
    ("extra", "key", "problem"),
    [
        ('[[events]]\nkind = "cable_pull"\nat_s = 700\nduration_s = 10\n', "events.0.kind",
         "cable_pull plays on the launch's time axis only"),
        ('[[events]]\nkind = "sensor_off"\nat_s = 100\nduration_s = 10\n', "events.0.at_s",
         "before dose_at_s (600)"),
    ],
)  # fmt: skip
def test_a_demo_that_follows_the_dose_plays_only_patient_events_after_it(
    extra: str, key: str, problem: str
) -> None:
    text = f'name = "x"\ndose_at_s = 600\n[demo]\nanchor = "dose"\n{extra}'
    with pytest.raises(ConfigError) as caught:
        parse_scenario_text(text, source="x.toml")
    assert any(line.startswith(f"x.toml: {key}: {problem}") for line in caught.value.problems)
    with pytest.raises(ConfigError, match=r"dose_at_s: required with demo\.anchor = 'dose'"):
        parse_scenario_text('name = "x"\n[demo]\n', source="x.toml")
    # Played from the launch, the same events are fine.
    parse_scenario_text(text.replace('anchor = "dose"', 'anchor = "start"'), source="x.toml")
