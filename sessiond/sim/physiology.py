"""A simple, deterministic model of one patient's vitals over a whole session, at 1 s resolution.

Each vital is one numpy array over session seconds, built in bulk as a sum of parts: the
resting value, the ketamine response after the dose, slow drift (smoothed noise over
minutes), a breathing-related swing (respiratory sinus arrhythmia for the pulse), beat-to-beat
noise, then the scenario's events. Every random draw happens in a fixed order before the
events are applied, and each vital family draws from its own stream, so adding an event or a
vital never changes the noise elsewhere.

The ketamine response (reference/clinical.md §2.1-2.3): BP and HR rise after the dose with
a route-specific time to peak and return, shaped as a gamma curve that is 1 at the peak and
5 % of it at the return time. The sizes are the reported means; `Patient.ketamine_response`
scales them for a stronger or weaker responder. An IV infusion (a scenario's `[infusion]`)
drives the response while the pump runs instead: it builds up while it runs, falls while it
is paused, peaks at the stop and is back to 5 % of it 90 min later.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from sessiond.model import Route
from sessiond.sim.scenario import (
    Bradycardia,
    Desaturation,
    HypertensiveSurge,
    LowPerfusion,
    Tachycardia,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy.typing as npt

    from sessiond.sim.scenario import Event, Patient, Scenario, ScenarioInfusion

#: The scenario random stream the SpO2 / PR / PI physiology draws from.
PHYSIOLOGY_STREAM = 0
#: The stream of the BP drift (separate, so the oximeter values stay as they were).
BP_STREAM = 2

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
#: Slow BP drift, mmHg (SD); diastolic follows systolic with this fraction plus its own part.
SYS_DRIFT_SD = 4.0
DIA_FOLLOWS_SYS = 0.6
DIA_OWN_DRIFT_SD = 1.5

_DRIFT_WINDOW_S = 300
_SPO2_DRIFT_WINDOW_S = 120
_RESP_DRIFT_WINDOW_S = 60
_BP_DRIFT_WINDOW_S = 600
#: The response is this fraction of its peak at the route's return time.
_RETURN_FRACTION = 0.05
#: An infusion of this many minutes gives the route's reported peak at its stop: IV ketamine
#: is 0.5 mg/kg over 40 min, and the Yale/Liu means are at 30-40 min (clinical.md §2.2).
INFUSION_REFERENCE_MIN = 40.0
#: Minutes after an infusion's stop when its response is down to 5 %: BP is back to baseline
#: within 1.5 h of the infusion (Gdańsk; clinical.md §2.2-2.3).
INFUSION_RETURN_MIN = 90.0


@dataclass(frozen=True, slots=True, kw_only=True)
class KetamineResponse:
    """The BP/HR rise after a dose by one route: timing and size at the peak."""

    #: Minutes from the dose to the peak rise.
    peak_min: float
    #: Minutes from the dose until the rise is down to 5 % of its peak.
    return_min: float
    #: Peak rise of systolic / diastolic BP, mmHg, and of the pulse, bpm.
    sys_mmhg: float
    dia_mmhg: float
    pr_bpm: float

    def shape(self, minutes: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """0 before the dose, 1 at the peak, 5 % at `return_min`: (t/tp)^a * e^(a (1 - t/tp))."""
        r = np.clip(minutes / self.peak_min, 0.0, None)
        ratio = self.return_min / self.peak_min
        a = math.log(_RETURN_FRACTION) / (math.log(ratio) + 1.0 - ratio)
        with np.errstate(divide="ignore"):
            log_r = np.log(r)
        out: npt.NDArray[np.float64] = np.where(r > 0, np.exp(a * (log_r + 1.0 - r)), 0.0)
        return out


# clinical.md §2.2-2.3. IV (0.5 mg/kg over 40 min): Yale 2024, 2 342 infusions, SBP/DBP peak
# at 40 min, mean +16/+11 mmHg; Liu, maxima at 30-40 min; Emory largest at 30 min; back to
# baseline within 1.5 h after the infusion (Gdańsk), so by ~2 h after the start. Pulse: Liu
# reports a small mean rise (+1.9 bpm); ketamine is sympathomimetic, so a few bpm [I].
# IM: plasma peak 5-15 min, effect 30 min-2 h. Intranasal (esketamine, SPRAVATO): BP peak
# ~40 min, mostly settled within the 2-h observation although the label says the rise can
# last ~4 h; a ≥ 40/25 mmHg rise in 8-19 % [V], so the mean is a little below IV's [I].
# Oral: 17-25 % bioavailable, Tmax ~1 h, effect 4-6 h: smaller and slower [I].
KETAMINE_RESPONSE: dict[Route, KetamineResponse] = {
    Route.IV: KetamineResponse(peak_min=35, return_min=120, sys_mmhg=16, dia_mmhg=11, pr_bpm=5),
    Route.IM: KetamineResponse(peak_min=15, return_min=90, sys_mmhg=16, dia_mmhg=11, pr_bpm=5),
    Route.INTRANASAL: KetamineResponse(
        peak_min=40, return_min=150, sys_mmhg=14, dia_mmhg=9, pr_bpm=4
    ),
    Route.ORAL: KetamineResponse(peak_min=60, return_min=240, sys_mmhg=7, dia_mmhg=5, pr_bpm=2),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Vitals:
    """The patient's vitals; element `k` of each array is session second `k`."""

    #: SpO2, whole %.
    spo2: npt.NDArray[np.int64]
    #: Pulse rate, whole bpm.
    pr: npt.NDArray[np.int64]
    #: Perfusion index, %, two decimals.
    pi: npt.NDArray[np.float64]
    #: Systolic and diastolic BP, whole mmHg.
    sys: npt.NDArray[np.int64]
    dia: npt.NDArray[np.int64]
    #: Heartbeats since the start at the start of each second (for the pleth waveform).
    beats: npt.NDArray[np.float64]
    #: Breathing, sin(phase): inspiration positive.
    breath: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.spo2)

    def mean_arterial(self, k: int) -> int:
        """MAP at second `k`: DIA + (SYS - DIA) / 3, as an oscillometric module reports it."""
        return mean_arterial(int(self.sys[k]), int(self.dia[k]))


def mean_arterial(sys: int, dia: int) -> int:
    """The usual MAP estimate, DIA + (SYS - DIA) / 3, rounded."""
    return round(dia + (sys - dia) / 3)


def simulate_patient(scenario: Scenario) -> Vitals:
    """The scenario patient's vitals for the whole session (deterministic for its seed)."""
    return model_patient(
        patient=scenario.patient,
        events=scenario.events,
        duration_s=scenario.duration_s,
        route=scenario.route,
        dose_at_s=scenario.dose_at_s,
        infusion=scenario.infusion,
        rng=scenario.rng(PHYSIOLOGY_STREAM),
        bp_rng=scenario.rng(BP_STREAM),
    )


def infusion_rise(
    t: npt.NDArray[np.float64], *, running: Sequence[tuple[float, float]]
) -> npt.NDArray[np.float64]:
    """The response (1 at the stop of a `INFUSION_REFERENCE_MIN` infusion) at session times `t`
    for a pump running in the `running` (start, end) spans: it builds up while the pump runs
    and decays while it does not (one compartment), to 5 % `INFUSION_RETURN_MIN` after."""
    k = math.log(1.0 / _RETURN_FRACTION) / (INFUSION_RETURN_MIN * 60.0)
    level = np.zeros_like(t)
    for start, end in running:
        since = np.clip(t - start, 0.0, end - start)
        after = np.clip(t - end, 0.0, None)
        level += (1.0 - np.exp(-k * since)) * np.exp(-k * after)
    out: npt.NDArray[np.float64] = level / (1.0 - math.exp(-k * INFUSION_REFERENCE_MIN * 60.0))
    return out


def ketamine_rise(
    t: npt.NDArray[np.float64], *, route: Route, dose_at_s: float | None
) -> npt.NDArray[np.float64]:
    """The response shape (0..1) at session times `t` for a dose at `dose_at_s` (0 if none)."""
    if dose_at_s is None:
        return np.zeros_like(t)
    return KETAMINE_RESPONSE[route].shape((t - dose_at_s) / 60.0)


def model_patient(
    *,
    patient: Patient,
    events: Sequence[Event],
    duration_s: int,
    rng: np.random.Generator,
    route: Route = Route.IV,
    dose_at_s: float | None = None,
    infusion: ScenarioInfusion | None = None,
    bp_rng: np.random.Generator | None = None,
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
    # The pulse: a slow part that events steer, then breathing and beat-to-beat noise on top.
    pr_slow = patient.pr + _slow_noise(rng, n, sd=PR_DRIFT_SD, window_s=_DRIFT_WINDOW_S)
    pr_fast = RSA_AMPLITUDE * breath + rng.normal(0.0, PR_NOISE_SD, n)
    pi_slow = patient.pi * np.exp(_slow_noise(rng, n, sd=PI_DRIFT_LOG_SD, window_s=_DRIFT_WINDOW_S))
    pi_fast = (1.0 + PI_BREATH_FRACTION * breath) + rng.normal(0.0, PI_NOISE_FRACTION, n)

    bp_rng = bp_rng or np.random.default_rng(0)
    sys_drift = _slow_noise(bp_rng, n, sd=SYS_DRIFT_SD, window_s=_BP_DRIFT_WINDOW_S)
    dia_drift = DIA_FOLLOWS_SYS * sys_drift + _slow_noise(
        bp_rng, n, sd=DIA_OWN_DRIFT_SD, window_s=_BP_DRIFT_WINDOW_S
    )

    if infusion is not None and dose_at_s is not None:
        shape = infusion_rise(t, running=infusion.running(dose_at_s))
    else:
        shape = ketamine_rise(t, route=route, dose_at_s=dose_at_s)
    rise = patient.ketamine_response * shape
    size = KETAMINE_RESPONSE[route]
    sys = patient.sys + sys_drift + rise * size.sys_mmhg
    dia = patient.dia + dia_drift + rise * size.dia_mmhg
    pr_slow += rise * size.pr_bpm
    hypoxic = np.zeros(n)

    for event in events:
        if isinstance(event, Desaturation):
            depth = _window(t, start=event.at_s, length=event.duration_s, ramp=event.ramp_s)
            drop = patient.spo2 - event.spo2
            spo2 -= depth * drop
            hypoxic += depth * drop * HYPOXIC_PR_PER_SPO2
        elif isinstance(event, HypertensiveSurge):
            w = _window(t, start=event.at_s, length=event.duration_s, ramp=event.ramp_s)
            sys += w * (event.sys - sys)
            dia += w * (event.dia - dia)
        elif isinstance(event, Bradycardia | Tachycardia):
            w = _window(t, start=event.at_s, length=event.duration_s, ramp=event.ramp_s)
            pr_slow += w * (event.pr - pr_slow)
        elif isinstance(event, LowPerfusion):
            w = _window(t, start=event.at_s, length=event.duration_s, ramp=event.ramp_s)
            # Geometric blend: PI falls by a factor, as vasoconstriction does.
            pi_slow *= np.exp(w * np.log(event.pi / pi_slow))

    pr = pr_slow + pr_fast + hypoxic
    pi = pi_slow * pi_fast
    pr_int = np.clip(np.rint(pr), 0, None).astype(np.int64)
    beats = np.concatenate(([rng.uniform(0.0, 1.0)], np.cumsum(pr_int / 60.0)))[:n]
    beats[1:] += beats[0]
    return Vitals(
        spo2=np.clip(np.rint(spo2), 0, 100).astype(np.int64),
        pr=pr_int,
        pi=np.round(np.clip(pi, PI_FLOOR, None), 2).astype(np.float64),
        sys=np.rint(sys).astype(np.int64),
        dia=np.rint(dia).astype(np.int64),
        beats=beats,
        breath=breath,
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
