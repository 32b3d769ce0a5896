"""A simple, deterministic model of one patient's vitals over a whole session, at 1 s resolution.

Each vital is one numpy array over session seconds, built in bulk as a sum of parts: the
resting value, a breathing-related swing (respiratory sinus arrhythmia for the pulse), slow
drift (smoothed noise over minutes), beat-to-beat noise, then the scenario's events. Every
random draw happens in a fixed order before the events are applied, so adding an event
never changes the noise elsewhere. Later responses (ketamine BP/HR) are more parts to add.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from sessiond.sim.scenario import Desaturation

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy.typing as npt

    from sessiond.sim.scenario import Event, Patient, Scenario

#: The scenario random stream the physiology draws from.
PHYSIOLOGY_STREAM = 0

#: Breathing-related SpO2 swing, % (peak); small, as a real oximeter averages over beats.
SPO2_BREATH_AMPLITUDE = 0.3
SPO2_NOISE_SD = 0.3
SPO2_DRIFT_SD = 0.3
#: Respiratory sinus arrhythmia, bpm (peak): the pulse quickens on inspiration.
RSA_AMPLITUDE = 3.0
PR_NOISE_SD = 0.6
PR_DRIFT_SD = 2.0
#: Breathing-related PI swing, as a fraction of PI.
PI_BREATH_FRACTION = 0.04
#: Slow PI drift, log-scale SD (PI wanders multiplicatively with vasomotor tone).
PI_DRIFT_LOG_SD = 0.1
PI_NOISE_FRACTION = 0.02
#: Breathing rate wander, as a fraction of the rate.
RESP_RATE_DRIFT_FRACTION = 0.05
#: Hypoxic tachycardia: bpm of pulse gained per % of SpO2 lost in a desaturation.
HYPOXIC_PR_PER_SPO2 = 0.5
#: Lowest PI a Masimo device reports, %.
PI_FLOOR = 0.02

_DRIFT_WINDOW_S = 300
_SPO2_DRIFT_WINDOW_S = 120
_RESP_DRIFT_WINDOW_S = 60


@dataclass(frozen=True, slots=True, kw_only=True)
class Vitals:
    """Vitals at the device's resolution; element `k` of each array is session second `k`."""

    #: SpO2, whole %.
    spo2: npt.NDArray[np.int64]
    #: Pulse rate, whole bpm.
    pr: npt.NDArray[np.int64]
    #: Perfusion index, %, two decimals.
    pi: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.spo2)


def simulate_patient(scenario: Scenario) -> Vitals:
    """The scenario patient's vitals for the whole session (deterministic for its seed)."""
    return model_patient(
        patient=scenario.patient,
        events=scenario.events,
        duration_s=scenario.duration_s,
        rng=scenario.rng(PHYSIOLOGY_STREAM),
    )


def model_patient(
    *, patient: Patient, events: Sequence[Event], duration_s: int, rng: np.random.Generator
) -> Vitals:
    """The vitals of `patient` for `duration_s` seconds, with the physiological `events` applied."""
    n = duration_s
    t = np.arange(n, dtype=np.float64)
    breath = _breathing(n, patient.resp_rate_per_min, rng)

    spo2 = (
        patient.spo2
        + SPO2_BREATH_AMPLITUDE * breath
        + _slow_noise(rng, n, sd=SPO2_DRIFT_SD, window_s=_SPO2_DRIFT_WINDOW_S)
        + rng.normal(0.0, SPO2_NOISE_SD, n)
    )
    pr = (
        patient.pr
        + RSA_AMPLITUDE * breath
        + _slow_noise(rng, n, sd=PR_DRIFT_SD, window_s=_DRIFT_WINDOW_S)
        + rng.normal(0.0, PR_NOISE_SD, n)
    )
    pi = patient.pi * np.exp(_slow_noise(rng, n, sd=PI_DRIFT_LOG_SD, window_s=_DRIFT_WINDOW_S)) * (
        1.0 + PI_BREATH_FRACTION * breath
    ) + rng.normal(0.0, PI_NOISE_FRACTION * patient.pi, n)

    for event in events:
        if isinstance(event, Desaturation):
            depth = _window(t, start=event.at_s, length=event.duration_s, ramp=event.ramp_s)
            drop = patient.spo2 - event.spo2
            spo2 -= depth * drop
            pr += depth * drop * HYPOXIC_PR_PER_SPO2

    return Vitals(
        spo2=np.clip(np.rint(spo2), 0, 100).astype(np.int64),
        pr=np.clip(np.rint(pr), 0, None).astype(np.int64),
        pi=np.round(np.clip(pi, PI_FLOOR, None), 2).astype(np.float64),
    )


def _breathing(n: int, rate_per_min: float, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """Breathing phase as sin(phase), inspiration positive; the rate wanders a little."""
    rate_hz = (rate_per_min / 60.0) * (
        1.0 + _slow_noise(rng, n, sd=RESP_RATE_DRIFT_FRACTION, window_s=_RESP_DRIFT_WINDOW_S)
    )
    phase = rng.uniform(0.0, 2.0 * np.pi) + 2.0 * np.pi * np.cumsum(rate_hz)
    return np.sin(phase)


def _slow_noise(
    rng: np.random.Generator, n: int, *, sd: float, window_s: int
) -> npt.NDArray[np.float64]:
    """Gaussian noise smoothed over about `window_s` seconds, with standard deviation `sd`."""
    kernel = np.hanning(window_s + 2)[1:-1]
    # Unit energy: smoothing unit-variance white noise then keeps unit variance.
    kernel /= np.sqrt(np.sum(kernel**2))
    white = rng.standard_normal(n + len(kernel) - 1)
    return sd * np.convolve(white, kernel, mode="valid")


def _window(
    t: npt.NDArray[np.float64], *, start: float, length: float, ramp: float
) -> npt.NDArray[np.float64]:
    """0 outside [start, start + length), 1 inside, with linear ramps of `ramp` s at both ends."""
    end = start + length
    if ramp <= 0:
        return ((t >= start) & (t < end)).astype(np.float64)
    return np.clip(np.minimum(t - start, end - t) / ramp, 0.0, 1.0)
