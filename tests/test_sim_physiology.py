"""The patient model: plausible resting vitals, deterministic for a seed, events in place."""

from __future__ import annotations

import numpy as np
import pytest

from sessiond.sim.physiology import simulate_patient
from sessiond.sim.scenario import Desaturation, Patient, Scenario, builtin_scenario


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
