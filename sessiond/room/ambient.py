"""Calm ambient audio for each session phase, synthesised here so the project ships no recordings.

Every track is a slowly evolving pad: soft chords of detuned sine voices with a few harmonics,
crossfaded from chord to chord, over a quiet filtered-noise bed, with slow swells and a fade at
both ends so a looping playlist moves from track to track without a jump. The phases differ
in character: `baseline` warm and settling, `onset` deepening (lower, darker as it goes),
`effect` spacious and slow (open voicings, long chords, high shimmer), `recovery` brighter
(higher register, soft bells).

Rendering is deterministic: the seed comes from the phase and track number, so the same
version of this module always writes the same bytes. All synthesis is vectorised numpy,
imported only when a track is rendered: a daemon whose library is already written (checked
from the files' headers) never loads it.
"""

# ruff: noqa: PLC0415 - numpy is imported where a track is rendered (see the docstring)

from __future__ import annotations

import logging
import os
import tempfile
import wave
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

logger = logging.getLogger(__name__)

#: The phases that have their own music (DESIGN §4; `ended` has none).
PHASES: tuple[str, ...] = ("baseline", "onset", "effect", "recovery")
TRACKS_PER_PHASE = 2
RATE_HZ = 22050
CHANNELS = 2
#: Peak level of a rendered track (-6 dBFS): calm material, and headroom for the player.
PEAK = 0.5
#: Bump when the synthesis changes, so each version renders its own (still fixed) bytes.
_VERSION = 1
#: Oscillators are rendered in blocks: the block start phase in float64, the rest in float32.
_BLOCK = 2048
#: The canonical PCM header `wave` writes.
_WAV_HEADER_BYTES = 44


@dataclass(frozen=True, slots=True)
class _Character:
    """What makes a phase sound like itself."""

    chords: tuple[tuple[int, ...], ...]  # MIDI note numbers, played in turn
    chord_s: float  # seconds per chord
    overlap_s: float  # crossfade between neighbouring chords
    brightness: float  # 0..1, weight of the upper harmonics
    darken: float  # 0..1, how much the brightness falls from start to end of a track
    detune_cents: float  # the two voices of each note, for slow beating and width
    swell_hz: tuple[float, float]  # range of the per-note amplitude swells
    noise: float  # level of the filtered noise bed
    noise_cutoff_hz: float
    drone: int | None  # MIDI note held under everything
    shimmer: float  # level of slow high partials
    bells: float  # level of soft bell tones
    bell_every_s: float
    duration_s: float
    transpose_second: int  # semitones for the second track


_CHARACTERS: dict[str, _Character] = {
    # D major, mid register, gentle movement: settling in.
    "baseline": _Character(
        chords=(
            (50, 57, 62, 66, 69),
            (43, 55, 59, 62, 69),
            (47, 54, 59, 62, 66),
            (43, 50, 59, 62, 67),
        ),
        chord_s=16.0,
        overlap_s=6.0,
        brightness=0.35,
        darken=0.0,
        detune_cents=4.0,
        swell_hz=(0.04, 0.11),
        noise=0.03,
        noise_cutoff_hz=900.0,
        drone=None,
        shimmer=0.0,
        bells=0.0,
        bell_every_s=0.0,
        duration_s=72.0,
        transpose_second=-2,
    ),
    # D minor, low, descending, a sub drone and brightness that falls away: going inward.
    "onset": _Character(
        chords=(
            (50, 57, 60, 64, 69),
            (46, 53, 57, 62, 65),
            (43, 50, 57, 58, 62),
            (45, 52, 57, 62, 64),
        ),
        chord_s=20.0,
        overlap_s=8.0,
        brightness=0.3,
        darken=0.6,
        detune_cents=5.0,
        swell_hz=(0.03, 0.08),
        noise=0.035,
        noise_cutoff_hz=600.0,
        drone=38,
        shimmer=0.0,
        bells=0.0,
        bell_every_s=0.0,
        duration_s=80.0,
        transpose_second=-3,
    ),
    # Open fifths and fourths, long chords, wide and airy with a high shimmer: space.
    "effect": _Character(
        chords=((41, 48, 55, 62, 69), (43, 50, 57, 64, 71), (38, 45, 52, 59, 64)),
        chord_s=30.0,
        overlap_s=12.0,
        brightness=0.2,
        darken=0.0,
        detune_cents=7.0,
        swell_hz=(0.02, 0.06),
        noise=0.05,
        noise_cutoff_hz=1400.0,
        drone=29,
        shimmer=0.05,
        bells=0.0,
        bell_every_s=0.0,
        duration_s=90.0,
        transpose_second=2,
    ),
    # C major, higher register, more harmonics and soft bells: coming back.
    "recovery": _Character(
        chords=(
            (48, 55, 64, 67, 71),
            (45, 57, 60, 65, 69),
            (43, 55, 62, 67, 71),
            (45, 52, 60, 64, 67),
        ),
        chord_s=12.0,
        overlap_s=5.0,
        brightness=0.5,
        darken=0.0,
        detune_cents=3.0,
        swell_hz=(0.05, 0.14),
        noise=0.02,
        noise_cutoff_hz=2500.0,
        drone=None,
        shimmer=0.02,
        bells=0.07,
        bell_every_s=6.0,
        duration_s=72.0,
        transpose_second=2,
    ),
}

#: Bell notes (C major pentatonic, fifth and sixth octave) for the recovery tracks.
_BELL_NOTES = (72, 74, 76, 79, 81, 84)


def track_name(phase: str, index: int) -> str:
    """The file name of track `index` (from 1) of `phase`, as the shipped M3U files list it."""
    return f"{phase}-{index}.wav"


def track_duration_s(phase: str) -> float:
    """The length of the shipped tracks of `phase`."""
    return _character(phase).duration_s


def _character(phase: str) -> _Character:
    try:
        return _CHARACTERS[phase]
    except KeyError:
        msg = f"no ambient music for phase {phase!r} (known: {', '.join(PHASES)})"
        raise ValueError(msg) from None


def _hz(note: float) -> float:
    return float(440.0 * 2.0 ** ((note - 69.0) / 12.0))


def _osc(freq_hz: float, start: int, count: int, rate_hz: int, phase: float) -> NDArray[np.float32]:
    """`sin(2π f t + 2π phase)` for samples `start .. start + count`, exact over long tracks.

    float32 `sin` is several times faster than float64 but cannot hold the phase of a minute
    of audio: each block's start phase is reduced modulo one cycle in float64 instead.
    """
    import numpy as np

    blocks = -(-count // _BLOCK)
    block_start = start + np.arange(blocks, dtype=np.float64) * _BLOCK
    coarse = ((freq_hz / rate_hz) * block_start + phase) % 1.0
    fine = np.arange(_BLOCK, dtype=np.float32) * np.float32(freq_hz / rate_hz)
    radians = coarse.astype(np.float32)[:, None] + fine[None, :]
    radians *= np.float32(2 * np.pi)
    np.sin(radians, out=radians)
    return radians.reshape(-1)[:count]


def _lfo(t: NDArray[np.float32], freq_hz: float, phase: float) -> NDArray[np.float32]:
    """A slow sine in 0..1 (amplitude swells)."""
    import numpy as np

    out = t * np.float32(freq_hz)
    out += np.float32(phase)
    out *= np.float32(2 * np.pi)
    np.sin(out, out=out)
    out *= np.float32(0.5)
    out += np.float32(0.5)
    return out


def _ramp(count: int, *, rising: bool) -> NDArray[np.float32]:
    """An equal-power ramp (quarter sine): neighbouring chords keep a steady loudness."""
    import numpy as np

    x = np.linspace(0.0, np.pi / 2, count, dtype=np.float32)
    return np.sin(x) if rising else np.cos(x)


def _pan(position: float) -> tuple[float, float]:
    """Constant-power gains (left, right) for `position` in -1..1."""
    import numpy as np

    angle = (position + 1.0) * np.pi / 4
    return float(np.cos(angle)), float(np.sin(angle))


def _chord_layer(
    c: _Character,
    chords: list[tuple[int, ...]],
    t: NDArray[np.float32],
    rate_hz: int,
    rng: np.random.Generator,
) -> NDArray[np.float32]:
    import numpy as np

    n = t.size
    out = np.zeros((n, CHANNELS), dtype=np.float32)
    segments = len(chords)
    seg_len = n / segments
    overlap = min(int(c.overlap_s * rate_hz), int(seg_len))
    for k, chord in enumerate(chords):
        start = max(0, int(k * seg_len - overlap / 2))
        end = min(n, int((k + 1) * seg_len + overlap / 2))
        count = end - start
        window = np.ones(count, dtype=np.float32)
        if k > 0:
            window[:overlap] = _ramp(overlap, rising=True)
        if k < segments - 1:
            window[count - overlap :] = _ramp(overlap, rising=False)
        # Brightness over the whole track: onset grows darker as it goes.
        position = (start + end) / 2 / n
        bright = c.brightness * (1.0 - c.darken * position)
        seg_t = t[start:end]
        for note in chord:
            base = _hz(note)
            # Lower notes carry the chord; upper ones sit softer, as in a string pad.
            level = 1.0 / len(chord) * (1.0 if note < 55 else 0.7 if note < 67 else 0.5)  # noqa: PLR2004
            swell = np.float32(0.6) + np.float32(0.4) * _lfo(
                seg_t, rng.uniform(*c.swell_hz), rng.random()
            )
            pan = rng.uniform(-0.5, 0.5)
            for side, cents in ((-0.35, -c.detune_cents), (0.35, c.detune_cents)):
                freq = base * 2.0 ** (cents / 1200.0)
                voice = np.zeros(count, dtype=np.float32)
                for harmonic in (1, 2, 3):
                    weight = bright ** (harmonic - 1) / harmonic
                    voice += np.float32(weight) * _osc(
                        freq * harmonic, start, count, rate_hz, rng.random()
                    )
                left, right = _pan(float(np.clip(pan + side, -1.0, 1.0)))
                voice *= swell * window * np.float32(level * 0.5)
                out[start:end, 0] += np.float32(left) * voice
                out[start:end, 1] += np.float32(right) * voice
    return out


def _drone_layer(
    note: int, t: NDArray[np.float32], rate_hz: int, rng: np.random.Generator
) -> NDArray[np.float32]:
    import numpy as np

    freq = _hz(note)
    tone = _osc(freq, 0, t.size, rate_hz, rng.random()) + np.float32(0.3) * _osc(
        2 * freq, 0, t.size, rate_hz, rng.random()
    )
    tone *= np.float32(0.18) * (np.float32(0.7) + np.float32(0.3) * _lfo(t, 0.025, rng.random()))
    return np.stack([tone, tone], axis=1)


def _shimmer_layer(
    chords: list[tuple[int, ...]], t: NDArray[np.float32], rate_hz: int, rng: np.random.Generator
) -> NDArray[np.float32]:
    import numpy as np

    out = np.zeros((t.size, CHANNELS), dtype=np.float32)
    notes = sorted({n + 24 for n in chords[0][-3:]})
    for note in notes:
        tone = _osc(_hz(note), 0, t.size, rate_hz, rng.random())
        # Long, squared swells: each partial appears and fades over tens of seconds.
        tone *= _lfo(t, rng.uniform(1 / 40, 1 / 20), rng.random()) ** 2
        left, right = _pan(rng.uniform(-0.9, 0.9))
        out[:, 0] += np.float32(left) * tone
        out[:, 1] += np.float32(right) * tone
    return out / np.float32(len(notes))


def _bell_layer(
    c: _Character, n: int, rate_hz: int, rng: np.random.Generator
) -> NDArray[np.float32]:
    import numpy as np

    out = np.zeros((n, CHANNELS), dtype=np.float32)
    decay_s = 2.5
    length = min(n, int(decay_s * 5 * rate_hz))
    local = np.arange(length, dtype=np.float32) / np.float32(rate_hz)
    envelope = np.exp(-local / np.float32(decay_s)) * (
        np.float32(1.0) - np.exp(-local / np.float32(0.03))
    )
    # Keep bells clear of the track's fades so the ends stay quiet.
    first, last = 4.0, n / rate_hz - decay_s * 2 - 4.0
    at = first
    while at < last:
        start = int(at * rate_hz)
        count = min(length, n - start)
        freq = _hz(int(rng.choice(_BELL_NOTES)))
        tone = _osc(freq, start, count, rate_hz, rng.random()) + np.float32(0.25) * _osc(
            freq * 2.76, start, count, rate_hz, rng.random()
        )
        tone *= envelope[:count] * np.float32(rng.uniform(0.6, 1.0))
        left, right = _pan(rng.uniform(-0.7, 0.7))
        out[start : start + count, 0] += np.float32(left) * tone
        out[start : start + count, 1] += np.float32(right) * tone
        at += c.bell_every_s * rng.uniform(0.7, 1.3)
    return out


def _noise_layer(
    c: _Character, t: NDArray[np.float32], rate_hz: int, rng: np.random.Generator
) -> NDArray[np.float32]:
    """Pink-ish noise under a soft low-pass, shaped in the frequency domain, swelling slowly."""
    import numpy as np

    n = t.size
    freqs = np.fft.rfftfreq(n, 1.0 / rate_hz)
    shape = 1.0 / np.sqrt(np.maximum(freqs, 20.0)) / (1.0 + (freqs / c.noise_cutoff_hz) ** 4)
    out = np.empty((n, CHANNELS), dtype=np.float32)
    for ch in range(CHANNELS):
        spectrum = np.fft.rfft(rng.standard_normal(n)) * shape
        noise = np.fft.irfft(spectrum, n)
        noise /= np.max(np.abs(noise)) or 1.0
        out[:, ch] = noise.astype(np.float32) * (
            np.float32(0.5) + np.float32(0.5) * _lfo(t, rng.uniform(0.02, 0.06), rng.random())
        )
    return out


def render_track(
    phase: str, index: int = 1, *, rate_hz: int = RATE_HZ, duration_s: float | None = None
) -> NDArray[np.float32]:
    """Track `index` (from 1) of `phase` as float32 samples, shape (frames, 2), peak `PEAK`.

    `duration_s` None: the phase's own length (`track_duration_s`). Same arguments, same samples.
    """
    import numpy as np

    c = _character(phase)
    if index < 1:
        msg = f"track index starts at 1, not {index}"
        raise ValueError(msg)
    duration = c.duration_s if duration_s is None else duration_s
    n = round(duration * rate_hz)
    if n <= 0:
        msg = f"duration must be positive, not {duration} s"
        raise ValueError(msg)
    rng = np.random.default_rng([zlib.crc32(f"{phase}-{index}".encode()), _VERSION])
    t = np.arange(n, dtype=np.float32) / np.float32(rate_hz)

    # The second and later tracks: another key and another starting chord.
    transpose = c.transpose_second * (index - 1)
    rotated = [c.chords[(k + index - 1) % len(c.chords)] for k in range(len(c.chords))]
    segments = max(1, round(duration / c.chord_s))
    chords = [
        tuple(note + transpose for note in rotated[k % len(rotated)]) for k in range(segments)
    ]

    mix = _chord_layer(c, chords, t, rate_hz, rng)
    if c.drone is not None:
        mix += _drone_layer(c.drone + transpose, t, rate_hz, rng)
    if c.shimmer:
        mix += np.float32(c.shimmer * 4) * _shimmer_layer(chords, t, rate_hz, rng)
    if c.bells:
        mix += np.float32(c.bells * 4) * _bell_layer(c, n, rate_hz, rng)
    peak = float(np.max(np.abs(mix))) or 1.0
    mix *= np.float32(1.0 / peak)
    mix += np.float32(c.noise * 4) * _noise_layer(c, t, rate_hz, rng)

    # Fade in and out so a looping playlist joins its tracks through silence, not a click.
    fade = min(n // 4, int(3.0 * rate_hz))
    if fade > 0:
        ramp = np.sin(np.linspace(0.0, np.pi / 2, fade, dtype=np.float32)) ** 2
        mix[:fade] *= ramp[:, None]
        mix[n - fade :] *= ramp[::-1, None]
    peak = float(np.max(np.abs(mix))) or 1.0
    return mix * np.float32(PEAK / peak)


def write_wav(path: Path, samples: NDArray[np.floating], rate_hz: int) -> None:
    """Write float samples in -1..1, shape (frames,) or (frames, channels), as 16-bit PCM WAV.

    The file appears whole or not at all (a temporary file renamed into place), so a crash
    never leaves a truncated track that a later start would take as present.
    """
    import numpy as np

    data = samples if samples.ndim == 2 else samples[:, None]  # noqa: PLR2004
    pcm = np.clip(np.round(data * 32767.0), -32768, 32767).astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as raw, wave.open(raw, "wb") as w:
            w.setnchannels(pcm.shape[1])
            w.setsampwidth(2)
            w.setframerate(rate_hz)
            w.writeframes(pcm.tobytes())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _is_complete(path: Path, *, frames: int, rate_hz: int) -> bool:
    """Whether `path` is a WAV of the expected shape and size (the header only: fast)."""
    try:
        if path.stat().st_size != _WAV_HEADER_BYTES + frames * CHANNELS * 2:
            return False  # truncated: the header still claims every frame
        with wave.open(str(path), "rb") as w:
            return (
                w.getnchannels() == CHANNELS
                and w.getsampwidth() == 2  # noqa: PLR2004
                and w.getframerate() == rate_hz
                and w.getnframes() == frames
            )
    except (OSError, EOFError, wave.Error):
        return False


def ensure_library(
    directory: Path, *, rate_hz: int = RATE_HZ, duration_s: float | None = None
) -> list[Path]:
    """Write the ambient tracks missing from `directory` (or not of the expected shape).

    Returns the files written: empty when every track was already there. `duration_s` None
    gives each phase its own length (what the shipped playlists expect).
    """
    written: list[Path] = []
    for phase in PHASES:
        duration = track_duration_s(phase) if duration_s is None else duration_s
        frames = round(duration * rate_hz)
        for index in range(1, TRACKS_PER_PHASE + 1):
            path = directory / track_name(phase, index)
            if _is_complete(path, frames=frames, rate_hz=rate_hz):
                continue
            write_wav(
                path, render_track(phase, index, rate_hz=rate_hz, duration_s=duration), rate_hz
            )
            logger.info("ambient: wrote %s", path)
            written.append(path)
    return written
