"""Ambient music synthesis: deterministic, calm, per phase, written once."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from sessiond.room.ambient import (
    CHANNELS,
    PEAK,
    PHASES,
    RATE_HZ,
    TRACKS_PER_PHASE,
    ensure_library,
    render_track,
    track_duration_s,
    track_name,
    write_wav,
)
from sessiond.room.playlist import load_playlist

REPO = Path(__file__).resolve().parent.parent
SHORT_S = 4.0


def centroid_hz(samples: np.ndarray) -> float:
    mono = samples.mean(axis=1)
    spectrum = np.abs(np.fft.rfft(mono))
    freqs = np.fft.rfftfreq(mono.size, 1 / RATE_HZ)
    return float((spectrum * freqs).sum() / spectrum.sum())


@pytest.fixture(scope="module")
def short_tracks() -> dict[tuple[str, int], np.ndarray]:
    return {
        (phase, index): render_track(phase, index, duration_s=SHORT_S)
        for phase in PHASES
        for index in (1, 2)
    }


def test_rendering_is_deterministic_down_to_the_bytes(tmp_path, short_tracks):
    again = render_track("effect", 2, duration_s=SHORT_S)
    assert np.array_equal(again, short_tracks["effect", 2])
    write_wav(tmp_path / "a.wav", again, RATE_HZ)
    write_wav(tmp_path / "b.wav", render_track("effect", 2, duration_s=SHORT_S), RATE_HZ)
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()


def test_tracks_have_the_asked_length_and_shape(short_tracks):
    for samples in short_tracks.values():
        assert samples.shape == (round(SHORT_S * RATE_HZ), CHANNELS)
        assert samples.dtype == np.float32


def test_a_full_track_is_a_minute_or_more_at_the_library_rate():
    assert all(60 <= track_duration_s(phase) <= 90 for phase in PHASES)
    samples = render_track("recovery", 1)
    assert samples.shape == (round(track_duration_s("recovery") * RATE_HZ), CHANNELS)
    assert float(np.max(np.abs(samples))) == pytest.approx(PEAK, abs=1e-6)


def test_calm_levels_no_clipping_not_silence(short_tracks):
    for key, samples in short_tracks.items():
        assert float(np.max(np.abs(samples))) <= PEAK + 1e-6, key
        middle = samples[samples.shape[0] // 4 : -samples.shape[0] // 4]
        assert float(np.sqrt(np.mean(middle**2))) > 0.03, key


def test_tracks_fade_in_and_out_so_loops_join_quietly(short_tracks):
    for key, samples in short_tracks.items():
        assert float(np.max(np.abs(samples[:50]))) < 0.01, key
        assert float(np.max(np.abs(samples[-50:]))) < 0.01, key


def test_each_phase_and_track_sounds_different(short_tracks):
    keys = list(short_tracks)
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            assert not np.allclose(short_tracks[a], short_tracks[b]), (a, b)
    # Onset is the darkest, recovery the brightest.
    bright = {phase: centroid_hz(short_tracks[phase, 1]) for phase in PHASES}
    assert bright["onset"] < bright["baseline"] < bright["recovery"]
    assert bright["onset"] < bright["effect"] < bright["recovery"]


def test_stereo_channels_differ(short_tracks):
    samples = short_tracks["effect", 1]
    assert not np.allclose(samples[:, 0], samples[:, 1])


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="ended"):
        render_track("ended", 1)
    with pytest.raises(ValueError, match="index"):
        render_track("onset", 0)
    with pytest.raises(ValueError, match="duration"):
        render_track("onset", 1, duration_s=0)


def test_write_wav_is_16_bit_pcm(tmp_path):
    tone = 0.25 * np.sin(np.linspace(0, 2 * np.pi * 440, RATE_HZ))
    write_wav(tmp_path / "mono.wav", tone, RATE_HZ)
    with wave.open(str(tmp_path / "mono.wav"), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (
            1,
            2,
            RATE_HZ,
            RATE_HZ,
        )
        pcm = np.frombuffer(w.readframes(RATE_HZ), dtype="<i2")
    assert abs(int(pcm.max()) - round(0.25 * 32767)) <= 1
    assert list(tmp_path.iterdir()) == [tmp_path / "mono.wav"]  # no temporary file left


def test_ensure_library_writes_the_missing_tracks_once(tmp_path):
    audio = tmp_path / "audio"
    written = ensure_library(audio, duration_s=1.0)
    expected = [audio / track_name(p, i) for p in PHASES for i in range(1, TRACKS_PER_PHASE + 1)]
    assert written == expected
    stamps = {path: path.stat().st_mtime_ns for path in expected}

    assert ensure_library(audio, duration_s=1.0) == []
    assert {path: path.stat().st_mtime_ns for path in expected} == stamps

    # A truncated file (a crash elsewhere, a copy gone wrong) is written again, alone.
    expected[3].write_bytes(expected[3].read_bytes()[:1000])
    assert ensure_library(audio, duration_s=1.0) == [expected[3]]
    with wave.open(str(expected[3]), "rb") as w:
        assert w.getnframes() == RATE_HZ
    assert sorted(audio.iterdir()) == sorted(expected)


def test_shipped_playlists_list_the_generated_tracks():
    for phase in PHASES:
        playlist = load_playlist(REPO / "playlists" / f"{phase}.m3u", check_files=False)
        assert [e.path for e in playlist.entries] == [
            REPO / "playlists" / "audio" / track_name(phase, i)
            for i in range(1, TRACKS_PER_PHASE + 1)
        ]
        assert all(e.duration_s == track_duration_s(phase) for e in playlist.entries)
        assert all(e.title for e in playlist.entries)
    ignore = (REPO / "playlists" / "audio" / ".gitignore").read_text()
    assert "*.wav" in ignore.splitlines()
