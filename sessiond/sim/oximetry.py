"""What an oximeter reports each second, and its pleth waveform at the device's sample rate.

`physiology` models the patient; this layer models the probe on the finger: the probe off
(no values), motion (artifact flag, numbers that are noise) and perfusion too low to trust.
Every protocol player reads the same track, so the same scenario plays the same way on a
Masimo, a Nonin or a Contec, each in its own flags.

The pleth waveform is computed in numpy blocks of `PLETH_BLOCK_S` seconds, each from its own
random stream, so any slice of it is the same however a player asks for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from sessiond.sim.scenario import MotionArtifact, SensorOff

if TYPE_CHECKING:
    import numpy.typing as npt

    from sessiond.sim.physiology import Vitals
    from sessiond.sim.scenario import Scenario

#: Random streams of the scenario seed (physiology uses 0 and 2, line noise 1).
MOTION_STREAM = 3
PLETH_STREAM = 4

#: Below this PI (%) the oximeter flags low perfusion (PRD "PI < 0.4 → LOW", clinical.md §1.6).
LOW_PERFUSION_PI = 0.4
#: Below this PI a Masimo also reports low signal IQ [I].
LOW_SIGNAL_PI = 0.2
#: Between the two a Nonin shows yellow (marginal) perfusion, above it green [I].
MARGINAL_PERFUSION_PI = 1.0

#: Motion drags SpO2 down (venous blood pulsates with the movement): by this much, %, plus a
#: half-normal part; PR follows the movement, not the heart. A monitor that ignored the
#: artifact flag would alarm on these numbers, which is the point of the scenario.
MOTION_SPO2_DROP = 8.0
MOTION_SPO2_DROP_SD = 4.0
MOTION_PR_SD = 25.0
#: Low perfusion makes the numbers less steady, %/bpm of extra noise.
LOW_PERFUSION_SPO2_SD = 1.0
LOW_PERFUSION_PR_SD = 3.0

PLETH_BLOCK_S = 10
_PLETH_NOISE = 0.02
_PLETH_MOTION = 1.5
_PLETH_BREATH = 0.15
_MOTION_SMOOTH_S = 0.25
_CACHED_BLOCKS = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class OximeterTrack:
    """Per session second: what the oximeter measures and how it qualifies it."""

    #: SpO2 %, PR bpm and PI % as measured (meaningless where `sensor_off`).
    spo2: npt.NDArray[np.int64]
    pr: npt.NDArray[np.int64]
    pi: npt.NDArray[np.float64]
    sensor_off: npt.NDArray[np.bool_]
    artifact: npt.NDArray[np.bool_]

    @property
    def low_perfusion(self) -> npt.NDArray[np.bool_]:
        flagged: npt.NDArray[np.bool_] = (self.pi < LOW_PERFUSION_PI) & ~self.sensor_off
        return flagged

    @property
    def low_signal(self) -> npt.NDArray[np.bool_]:
        flagged: npt.NDArray[np.bool_] = (self.pi < LOW_SIGNAL_PI) & ~self.sensor_off
        return flagged

    def __len__(self) -> int:
        return len(self.spo2)


def oximeter_track(scenario: Scenario, vitals: Vitals) -> OximeterTrack:
    """The oximeter's view of `vitals` under the scenario's probe events."""
    n = len(vitals)
    seconds = np.arange(n, dtype=np.float64)
    sensor_off = np.zeros(n, dtype=np.bool_)
    artifact = np.zeros(n, dtype=np.bool_)
    for event in scenario.events:
        if isinstance(event, SensorOff):
            sensor_off |= in_window(seconds, event.at_s, event.duration_s)
        elif isinstance(event, MotionArtifact):
            artifact |= in_window(seconds, event.at_s, event.duration_s)
    artifact &= ~sensor_off
    # Drawn for the whole session whatever the events, so events never shift the noise.
    rng = scenario.rng(MOTION_STREAM)
    spo2_drop = MOTION_SPO2_DROP + np.abs(rng.normal(0.0, MOTION_SPO2_DROP_SD, n))
    pr_jump = rng.normal(0.0, MOTION_PR_SD, n)
    spo2_wobble = rng.normal(0.0, LOW_PERFUSION_SPO2_SD, n)
    pr_wobble = rng.normal(0.0, LOW_PERFUSION_PR_SD, n)

    spo2 = vitals.spo2.astype(np.float64)
    pr = vitals.pr.astype(np.float64)
    low = vitals.pi < LOW_PERFUSION_PI
    spo2 = np.where(low, spo2 + spo2_wobble, spo2)
    pr = np.where(low, pr + pr_wobble, pr)
    spo2 = np.where(artifact, spo2 - spo2_drop, spo2)
    pr = np.where(artifact, pr + pr_jump, pr)
    return OximeterTrack(
        spo2=np.clip(np.rint(spo2), 50, 100).astype(np.int64),
        pr=np.clip(np.rint(pr), 25, 240).astype(np.int64),
        pi=vitals.pi.copy(),
        sensor_off=sensor_off,
        artifact=artifact,
    )


def in_window(
    seconds: npt.NDArray[np.float64], start: float, length: float
) -> npt.NDArray[np.bool_]:
    """Seconds in [start, start + length)."""
    inside: npt.NDArray[np.bool_] = (seconds >= start) & (seconds < start + length)
    return inside


def _template(phase: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """One heartbeat of a finger pulse wave, peak ~1: systolic upstroke and a diastolic bump."""
    systolic = np.exp(-(((phase - 0.18) / 0.08) ** 2))
    diastolic = 0.35 * np.exp(-(((phase - 0.48) / 0.1) ** 2))
    # The wave wraps: the previous beat's diastolic tail is in the next beat's start.
    tail = 0.35 * np.exp(-(((phase + 0.52) / 0.1) ** 2))
    out: npt.NDArray[np.float64] = systolic + diastolic + tail - 0.3
    return out


class PlethWave:
    """The pleth waveform of one oximeter at `rate_hz`, in units of the resting pulse height.

    0 is the mean light level; a resting pulse swings about -0.3..+0.7; it scales with PI,
    wanders with breathing, is a random walk under motion and is flat with the probe off.
    """

    def __init__(
        self,
        *,
        scenario: Scenario,
        vitals: Vitals,
        track: OximeterTrack,
        rate_hz: int,
        origin: int = 0,
    ) -> None:
        self._scenario = scenario
        self.rate_hz = rate_hz
        self._cache: dict[int, npt.NDArray[np.float64]] = {}
        self.rebind(vitals=vitals, track=track, origin=origin)

    def rebind(self, *, vitals: Vitals, track: OximeterTrack, origin: int) -> None:
        """Follow new arrays (a demo's plan changed): element `k` is session second
        `origin + k`. Samples not yet asked for come from them; those asked for were the same."""
        self._vitals = vitals
        self._track = track
        self._origin = origin
        self._seconds = origin + np.arange(len(vitals), dtype=np.float64)
        self._amplitude = np.clip(vitals.pi / self._scenario.patient.pi, 0.0, 3.0)
        self._cache.clear()

    def samples(self, start: int, stop: int) -> npt.NDArray[np.float64]:
        """Samples `start` to `stop - 1` (sample `i` is at session time `i / rate_hz`)."""
        block_len = PLETH_BLOCK_S * self.rate_hz
        first, last = start // block_len, max(start, stop - 1) // block_len
        blocks = [self._block(b) for b in range(first, last + 1)]
        joined = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
        offset = first * block_len
        return joined[start - offset : stop - offset]

    def beat_onsets(self, start: int, stop: int) -> npt.NDArray[np.bool_]:
        """Whether a heartbeat starts at each sample `start` to `stop - 1`."""
        t = np.arange(start - 1, stop, dtype=np.float64) / self.rate_hz
        beats = np.floor(np.interp(t, self._seconds, self._vitals.beats))
        onset: npt.NDArray[np.bool_] = np.diff(beats) > 0
        return onset

    def _block(self, b: int) -> npt.NDArray[np.float64]:
        cached = self._cache.get(b)
        if cached is not None:
            return cached
        rate = self.rate_hz
        n = PLETH_BLOCK_S * rate
        t = (b * n + np.arange(n, dtype=np.float64)) / rate
        beats = np.interp(t, self._seconds, self._vitals.beats)
        amplitude = np.interp(t, self._seconds, self._amplitude)
        breath = np.interp(t, self._seconds, self._vitals.breath)
        rng = self._scenario.rng(PLETH_STREAM, rate, b)
        wave = amplitude * _template(beats % 1.0) + _PLETH_BREATH * breath
        wave += rng.normal(0.0, _PLETH_NOISE, n)
        second = np.clip(t.astype(np.int64) - self._origin, 0, len(self._track) - 1)
        moving = self._track.artifact[second]
        if moving.any():
            width = max(1, int(_MOTION_SMOOTH_S * rate))
            jolts = np.convolve(
                rng.normal(0.0, _PLETH_MOTION, n + width - 1),
                np.ones(width) / np.sqrt(width),
                "valid",
            )
            wave = np.where(moving, wave + jolts, wave)
        wave = np.where(self._track.sensor_off[second], 0.0, wave)
        if len(self._cache) >= _CACHED_BLOCKS:  # players move forward: keep recent blocks
            self._cache.clear()
        self._cache[b] = wave
        return wave
