"""The patient model: plausible resting vitals, deterministic for a seed, events in place."""

from __future__ import annotations

import numpy as np
import pytest

from sessiond.model import Route
from sessiond.sim.physiology import KETAMINE_RESPONSE, ketamine_rise, simulate_patient
from sessiond.sim.scenario import (
    Bradycardia,
    Desaturation,
    HypertensiveSurge,
    LowPerfusion,
    Patient,
    Scenario,
    Tachycardia,
    builtin_scenario,
)


@pytest.fixture(scope="module")
def demo() -> Scenario:
    return builtin_scenario("demo")


def test_same_seed_same_vitals_other_seed_other_vitals(demo: Scenario) -> None:
    """Vitals are a pure function of the scenario, seed included."""
    first, again = simulate_patient(demo), simulate_patient(demo)
    other = simulate_patient(demo.model_copy(update={"seed": demo.seed + 1}))
    for name in ("spo2", "pr", "pi"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
        assert not np.array_equal(getattr(first, name), getattr(other, name))


def test_one_sample_per_second_at_device_resolution(demo: Scenario) -> None:
    """One value per session second; SpO2 and PR whole numbers, PI to two decimals."""
    vitals = simulate_patient(demo)
    assert len(vitals) == demo.duration_s
    assert vitals.spo2.dtype == np.int64
    assert vitals.pr.dtype == np.int64
    np.testing.assert_array_equal(vitals.pi, np.round(vitals.pi, 2))


def test_resting_vitals_are_plausible() -> None:
    """A calm patient: SpO2 mostly 97-98 and never above 100, PR near 72, PI near 3."""
    scenario = Scenario(name="calm", seed=7, duration_s=3600)
    vitals = simulate_patient(scenario)
    assert vitals.spo2.max() <= 100
    assert np.mean((vitals.spo2 >= 97) & (vitals.spo2 <= 98)) > 0.8
    assert vitals.spo2.min() >= 94
    assert 68 <= vitals.pr.mean() <= 76
    assert vitals.pr.min() >= 55
    assert vitals.pr.max() <= 90
    assert 2.5 <= vitals.pi.mean() <= 3.5
    assert vitals.pi.min() > 0


def test_spo2_is_clipped_at_100() -> None:
    """A patient resting at 100 % never reads above 100."""
    vitals = simulate_patient(Scenario(name="full", patient=Patient(spo2=100), duration_s=600))
    assert vitals.spo2.max() == 100


def test_pulse_follows_breathing() -> None:
    """Respiratory sinus arrhythmia: the pulse's strongest fast rhythm is the breathing rate."""
    rate_per_min = 12.0
    scenario = Scenario(
        name="rsa", seed=3, duration_s=1800, patient=Patient(resp_rate_per_min=rate_per_min)
    )
    pr = simulate_patient(scenario).pr.astype(np.float64)
    spectrum = np.abs(np.fft.rfft(pr - pr.mean()))
    freqs = np.fft.rfftfreq(len(pr), d=1.0)
    band = freqs > 0.05  # above the slow drift
    peak_hz = freqs[band][np.argmax(spectrum[band])]
    assert peak_hz == pytest.approx(rate_per_min / 60, rel=0.15)


def test_desaturation_brings_spo2_below_90_in_its_window_only() -> None:
    """desaturation.toml: SpO2 < 90 once ramped down, back to baseline outside the window."""
    scenario = builtin_scenario("desaturation")
    (dip,) = [e for e in scenario.events if isinstance(e, Desaturation)]
    spo2 = simulate_patient(scenario).spo2
    start, end = int(dip.at_s), int(dip.at_s + dip.duration_s)
    ramp = int(dip.ramp_s)
    assert spo2[start + ramp : end - ramp].max() < 90
    assert spo2[start + ramp : end - ramp].min() >= 84  # the target, 86, give or take noise
    assert spo2[:start].min() >= 94
    assert spo2[end:].min() >= 94


def test_an_event_leaves_the_rest_of_the_session_untouched() -> None:
    """Adding an event changes nothing outside its window (the noise does not shift)."""
    with_dip = builtin_scenario("desaturation")
    without = with_dip.model_copy(update={"events": ()})
    a, b = simulate_patient(with_dip), simulate_patient(without)
    outside = np.r_[0:60, 120:400]
    np.testing.assert_array_equal(a.spo2[outside], b.spo2[outside])
    np.testing.assert_array_equal(a.pr[outside], b.pr[outside])
    inside = np.r_[70:110]
    assert (a.pr[inside] > b.pr[inside]).mean() > 0.8  # hypoxia quickens the pulse


# --- the ketamine response (reference/clinical.md §2.1-2.3) ---

#: Where each route's BP rise should peak (minutes after the dose) and be gone by.
ROUTE_WINDOWS = {
    Route.IV: (30, 40, 150),  # Yale/Liu: peak 30-40 min; back within 1.5 h of a 40-min infusion
    Route.IM: (5, 20, 150),  # plasma peak 5-15 min, effect 30 min-2 h
    Route.INTRANASAL: (30, 45, 150),  # esketamine: BP peak ~40 min
    Route.ORAL: (30, 75, 240),  # Tmax ~1 h, effect 4-6 h
}


@pytest.mark.parametrize("route", list(Route))
def test_ketamine_response_peaks_in_the_documented_window_and_returns(route: Route) -> None:
    """The shape is 0 before the dose, peaks at 1 in the route's window, and is gone after."""
    earliest, latest, gone = ROUTE_WINDOWS[route]
    t = np.arange(0, 300 * 60, 10, dtype=np.float64)
    rise = ketamine_rise(t, route=route, dose_at_s=600.0)
    minutes_after = (t - 600.0) / 60
    assert rise[minutes_after < 0].max() == 0
    assert earliest <= minutes_after[rise.argmax()] <= latest
    assert rise.max() == pytest.approx(1.0, abs=1e-3)
    assert rise[minutes_after >= gone].max() < 0.06
    # It rises and falls once: no second bump.
    peak = rise.argmax()
    assert (np.diff(rise[minutes_after >= 0][: peak - 60]) >= 0).all()
    assert (np.diff(rise[peak:]) <= 0).all()


def test_oral_rise_is_smaller_and_later_than_iv() -> None:
    """Oral ketamine (17-25 % bioavailable) raises BP less and later than IV."""
    iv, oral = KETAMINE_RESPONSE[Route.IV], KETAMINE_RESPONSE[Route.ORAL]
    assert oral.sys_mmhg < iv.sys_mmhg
    assert oral.dia_mmhg < iv.dia_mmhg
    assert oral.peak_min > iv.peak_min


@pytest.mark.parametrize("route", list(Route))
def test_dose_adds_the_response_to_bp_and_pulse_and_nothing_else(route: Route) -> None:
    """With and without the dose, the same seed differs only by the route's response."""
    base = Scenario(name="r", seed=4, duration_s=5 * 3600, route=route)
    dosed = simulate_patient(base.model_copy(update={"dose_at_s": 600.0}))
    plain = simulate_patient(base)
    size = KETAMINE_RESPONSE[route]
    d_sys = dosed.sys - plain.sys
    d_dia = dosed.dia - plain.dia
    t = np.arange(base.duration_s)
    peak_s = 600 + int(size.peak_min * 60)
    assert abs(d_sys[peak_s] - size.sys_mmhg) <= 1
    assert abs(d_dia[peak_s] - size.dia_mmhg) <= 1
    assert abs(int(dosed.pr[peak_s]) - int(plain.pr[peak_s]) - size.pr_bpm) <= 1
    assert (d_sys[t < 600] == 0).all()
    after = t >= 600 + size.return_min * 60 + 600
    assert np.abs(d_sys[after]).max() <= 1
    np.testing.assert_array_equal(dosed.spo2, plain.spo2)


def test_demo_bp_stays_in_range_and_rises_after_the_dose(demo: Scenario) -> None:
    """demo.toml: resting ~122/78, a visible rise near minute 45, no BP alarm limit reached."""
    vitals = simulate_patient(demo)
    assert demo.dose_at_s == 600
    before = vitals.sys[:600].mean()
    peak = vitals.sys[2400:3000].mean()
    assert 112 <= before <= 132
    assert peak - before > 8
    assert vitals.sys.max() < 150
    assert vitals.dia.max() < 95
    assert (vitals.dia < vitals.sys).all()


# --- events ---


def test_hypertensive_surge_reaches_its_targets_in_the_window_only() -> None:
    """hypertensive.toml: SYS/DIA at the targets on the plateau, untouched outside."""
    scenario = builtin_scenario("hypertensive")
    (surge,) = scenario.events
    assert isinstance(surge, HypertensiveSurge)
    with_surge = simulate_patient(scenario)
    without = simulate_patient(scenario.model_copy(update={"events": ()}))
    start, end, ramp = int(surge.at_s), int(surge.at_s + surge.duration_s), int(surge.ramp_s)
    np.testing.assert_array_equal(with_surge.sys[start + ramp : end - ramp], surge.sys)
    np.testing.assert_array_equal(with_surge.dia[start + ramp : end - ramp], surge.dia)
    np.testing.assert_array_equal(with_surge.sys[:start], without.sys[:start])
    np.testing.assert_array_equal(with_surge.sys[end:], without.sys[end:])
    # The ramp climbs steadily from the patient's value to the target.
    assert (np.diff(with_surge.sys[start : start + ramp]) >= -1).all()


@pytest.mark.parametrize(
    ("name", "kind"), [("bradycardia", Bradycardia), ("tachycardia", Tachycardia)]
)
def test_pulse_events_steer_the_pulse_to_their_target(
    name: str, kind: type[Bradycardia | Tachycardia]
) -> None:
    """On each plateau the pulse is the target give or take sinus arrhythmia and noise."""
    scenario = builtin_scenario(name)
    vitals = simulate_patient(scenario)
    plain = simulate_patient(scenario.model_copy(update={"events": ()}))
    changed = np.zeros(scenario.duration_s, dtype=np.bool_)
    for event in scenario.events:
        assert isinstance(event, Bradycardia | Tachycardia)
        assert isinstance(event, kind)
        start, end = int(event.at_s), int(event.at_s + event.duration_s)
        plateau = vitals.pr[start + int(event.ramp_s) : end - int(event.ramp_s)]
        assert np.abs(plateau - event.pr).max() <= 6
        assert abs(plateau.mean() - event.pr) <= 1.5
        changed[start:end] = True
    np.testing.assert_array_equal(vitals.pr[~changed], plain.pr[~changed])


def test_low_perfusion_lowers_pi_to_its_target() -> None:
    """low_perfusion.toml: PI falls to each target; elsewhere it is the patient's."""
    scenario = builtin_scenario("low_perfusion")
    vitals = simulate_patient(scenario)
    for event in scenario.events:
        assert isinstance(event, LowPerfusion)
        start, end = int(event.at_s), int(event.at_s + event.duration_s)
        plateau = vitals.pi[start + int(event.ramp_s) : end - int(event.ramp_s)]
        assert abs(np.median(plateau) - event.pi) <= 0.02
    assert vitals.pi[:180].min() > 1.5


def test_breathing_moves_spo2_a_little() -> None:
    """Breathing-related SpO2 noise: the fast SpO2 rhythm is the breathing rate."""
    scenario = Scenario(name="b", seed=8, duration_s=1800, patient=Patient(resp_rate_per_min=10))
    vitals = simulate_patient(scenario)
    spo2 = vitals.spo2.astype(np.float64)
    assert spo2.std() > 0.2
    # Correlated with the breathing wave the model keeps for the pleth.
    assert np.corrcoef(spo2, vitals.breath)[0, 1] > 0.2
