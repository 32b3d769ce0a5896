"""The music player on real libvlc (headless ALSA null output, where volume reads back)."""

from __future__ import annotations

import asyncio
import functools
import logging
import shutil
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import vlc

from sessiond.room import music as music_module
from sessiond.room.ambient import RATE_HZ, ensure_library, write_wav
from sessiond.room.music import MusicConfig, MusicPlayer, MusicStatus
from sessiond.room.playlist import PlaylistError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

HEADLESS = ("--aout=alsa", "--alsa-audio-device=null", "--no-video", "--quiet")
REPO = Path(__file__).resolve().parent.parent


def tone(path: Path, seconds: float, freq_hz: float) -> None:
    t = np.arange(round(seconds * RATE_HZ)) / RATE_HZ
    write_wav(path, 0.2 * np.sin(2 * np.pi * freq_hz * t), RATE_HZ)


@pytest.fixture(scope="module")
def playlists(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("playlists")
    audio = root / "audio"
    # Long enough to outlast any test; the short ones end at once on the null output.
    for name, seconds, freq in [
        ("baseline-1", 10, 220),
        ("baseline-2", 10, 247),
        ("onset-1", 10, 165),
        ("short-1", 1, 440),
        ("short-2", 1, 660),
    ]:
        tone(audio / f"{name}.wav", seconds, freq)
    (root / "baseline.m3u").write_text(
        "#EXTM3U\n#EXTINF:10,Low\naudio/baseline-1.wav\naudio/baseline-2.wav\n"
    )
    (root / "onset.m3u").write_text("#EXTM3U\naudio/onset-1.wav\n")
    (root / "short.m3u").write_text("audio/short-1.wav\naudio/short-2.wav\n")
    (root / "broken.m3u").write_text("audio/baseline-1.wav\naudio/gone.wav\n")
    return root


def config(playlists: Path, **changes: object) -> MusicConfig:
    values: dict[str, object] = {
        "playlists_dir": str(playlists),
        "generate_ambient": False,
        "vlc_args": HEADLESS,
        "crossfade_s": 0.6,
        "ramp_s": 0.4,
        "duck_volume_pct": 20,
        "duck_ramp_s": 0.2,
        "restore_ramp_s": 0.4,
    }
    values.update(changes)
    return MusicConfig.model_validate(values)


@pytest.fixture
async def player(playlists: Path) -> AsyncIterator[MusicPlayer]:
    music = MusicPlayer(config(playlists))
    await music.start()
    assert music.available, music.reason
    try:
        yield music
    finally:
        await music.close()


@dataclass(frozen=True)
class Deck:
    """What libvlc itself says about one of the player's media players."""

    state: str
    volume: int
    mrl: str | None


async def probe(music: MusicPlayer, deck: int) -> Deck:
    mp = music._decks[deck].mp

    def read() -> Deck:  # on the player's libvlc thread, like every other libvlc call
        media = mp.get_media()
        mrl = None
        if media is not None:
            mrl = media.get_mrl()
            media.release()
        return Deck(str(mp.get_state()).removeprefix("State."), mp.audio_get_volume(), mrl)

    return await music._call(read)


async def until(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    """Poll `check` until it holds: libvlc has no event for a volume reached."""
    async with asyncio.timeout(within):
        while not await check():  # noqa: ASYNC110 - a libvlc state, not something to await
            await asyncio.sleep(0.02)


async def deck_is(music: MusicPlayer, deck: int, *, state: str, volume: int | None = None) -> bool:
    d = await probe(music, deck)
    return d.state == state and (volume is None or d.volume == volume)


async def ramps_done(music: MusicPlayer) -> None:
    for deck in music._decks:
        if deck.ramp is not None:
            await deck.ramp


async def test_a_playlist_starts_with_its_first_file_at_the_volume(player):
    await player.play("baseline", 60)
    await until(lambda: deck_is(player, 0, state="Playing", volume=60))
    assert (await probe(player, 0)).mrl == (f"file://{player._dir / 'audio' / 'baseline-1.wav'}")
    assert player.status() == MusicStatus(
        available=True,
        reason=None,
        playlist="baseline",
        track="baseline-1.wav",
        volume_pct=60,
        output_volume_pct=60,
        ducked=False,
        playing=True,
    )


async def test_a_phase_change_crossfades_then_stops_the_old_playlist(player):
    await player.play("baseline", 60, crossfade_s=0)
    await until(lambda: deck_is(player, 0, state="Playing", volume=60))

    seen: list[tuple[Deck, Deck]] = []

    async def old_stopped_new_full() -> bool:
        seen.append((await probe(player, 0), await probe(player, 1)))
        old, new = seen[-1]
        return old.state == "Stopped" and new.state == "Playing" and new.volume == 60

    await player.play("onset", 60, crossfade_s=0.8)
    await until(old_stopped_new_full)
    both = [
        (old.volume, new.volume)
        for old, new in seen
        if old.state == new.state == "Playing" and 0 < old.volume < 60 and 0 < new.volume < 60
    ]
    assert both, seen  # at some point both sounded, each part way
    assert seen[-1][1].mrl is not None
    assert seen[-1][1].mrl.endswith("/audio/onset-1.wav")
    assert player.status().playlist == "onset"
    assert player.status().track == "onset-1.wav"

    # And back: the stopped deck starts again from silence, not at its old volume.
    await player.play("baseline", 40, crossfade_s=0.4)
    first = await probe(player, 0)
    assert first.volume <= 10 or first.state != "Playing"
    await until(lambda: deck_is(player, 1, state="Stopped"))
    await until(lambda: deck_is(player, 0, state="Playing", volume=40))


async def test_a_ramp_passes_through_intermediate_volumes_to_its_target(player):
    await player.play("baseline", 20, crossfade_s=0)
    await until(lambda: deck_is(player, 0, state="Playing", volume=20))

    volumes: list[int] = []

    async def at_target() -> bool:
        volumes.append((await probe(player, 0)).volume)
        return volumes[-1] == 80

    await player.set_volume(80, ramp_s=0.6)
    await until(at_target)
    assert any(20 < v < 80 for v in volumes), volumes
    assert volumes == sorted(volumes)
    await ramps_done(player)
    assert (await probe(player, 0)).volume == 80
    assert player.status().output_volume_pct == 80


async def test_a_new_ramp_takes_over_from_the_level_reached(player):
    await player.play("baseline", 0, crossfade_s=0)
    await until(lambda: deck_is(player, 0, state="Playing", volume=0))
    await player.set_volume(100, ramp_s=2.0)
    await until(lambda: _volume_above(player, 10))
    reached = player._decks[0].level
    assert 10 < reached < 100
    await player.set_volume(5, ramp_s=0.3)
    volumes = [(await probe(player, 0)).volume]
    await until(lambda: _append_volume(player, volumes, 5))
    # Down from where the first ramp was, never up to its target first.
    assert max(volumes) <= reached + 6, volumes
    await ramps_done(player)
    assert (await probe(player, 0)).volume == 5


async def _append_volume(music: MusicPlayer, volumes: list[int], target: int) -> bool:
    volumes.append((await probe(music, 0)).volume)
    return volumes[-1] == target


async def _volume_above(music: MusicPlayer, level: int) -> bool:
    return (await probe(music, 0)).volume > level


async def test_duck_goes_to_the_duck_level_and_restore_comes_back(player):
    await player.play("baseline", 60, crossfade_s=0)
    await until(lambda: deck_is(player, 0, state="Playing", volume=60))

    await player.duck()
    status = player.status()
    assert (status.ducked, status.volume_pct) == (True, 60)
    await until(lambda: deck_is(player, 0, state="Playing", volume=20))
    assert player.status().output_volume_pct == 20

    await player.restore()
    assert not player.status().ducked
    await until(lambda: deck_is(player, 0, state="Playing", volume=60))


async def test_ducking_never_raises_the_volume_and_keeps_the_target(player):
    await player.play("baseline", 30, crossfade_s=0)
    await until(lambda: deck_is(player, 0, state="Playing", volume=30))
    await player.duck(level_pct=50)
    await ramps_done(player)
    assert (await probe(player, 0)).volume == 30

    # A new target while ducked waits for the restore.
    await player.set_volume(80, ramp_s=0.1)
    await ramps_done(player)
    assert (await probe(player, 0)).volume == 50
    assert player.status().volume_pct == 80
    await player.restore(ramp_s=0.1)
    await ramps_done(player)
    assert (await probe(player, 0)).volume == 80


async def test_a_duck_during_a_crossfade_silences_the_old_side_fast(player):
    await player.play("baseline", 60, crossfade_s=0)
    await until(lambda: deck_is(player, 0, state="Playing", volume=60))
    await player.play("onset", 60, crossfade_s=30)
    await player.duck()
    await until(lambda: deck_is(player, 0, state="Stopped"), within=2)
    await ramps_done(player)
    assert (await probe(player, 1)).volume == 20


async def test_the_end_of_a_track_starts_the_next_and_the_list_wraps(playlists):
    tracks: asyncio.Queue[str | None] = asyncio.Queue()
    music = MusicPlayer(config(playlists), on_change=lambda s: tracks.put_nowait(s.track))
    await music.start()
    try:
        await music.play("short", 50, crossfade_s=0)
        order: list[str] = []
        async with asyncio.timeout(8):
            while len(order) < 4:
                track = await tracks.get()
                if track is not None and (not order or order[-1] != track):
                    order.append(track)
        assert order == ["short-1.wav", "short-2.wav", "short-1.wav", "short-2.wav"]
        assert (await probe(music, 0)).mrl is not None
        assert music._decks[1].playlist is None  # the same deck plays on: no crossfade
    finally:
        await music.close()


async def test_the_same_playlist_again_only_changes_the_volume(player):
    await player.play("baseline", 60, crossfade_s=0)
    await until(lambda: deck_is(player, 0, state="Playing", volume=60))
    before = await probe(player, 0)
    await player.play("baseline", 40)
    await ramps_done(player)
    after = await probe(player, 0)
    assert (after.mrl, after.volume) == (before.mrl, 40)
    assert (await probe(player, 1)).state == "NothingSpecial"


async def test_stop_fades_out_and_stops(player):
    await player.play("baseline", 60, crossfade_s=0)
    await until(lambda: deck_is(player, 0, state="Playing", volume=60))
    await player.stop(fade_s=0.2)
    assert player.status().playing is False
    assert player.status().playlist is None
    await until(lambda: deck_is(player, 0, state="Stopped"))


async def test_a_bad_playlist_is_refused_and_the_music_plays_on(player):
    await player.play("baseline", 60, crossfade_s=0)
    with pytest.raises(PlaylistError, match=r"nope\.m3u: no such playlist"):
        await player.play("nope", 60)
    with pytest.raises(PlaylistError, match=r"broken\.m3u:2: no such file: audio/gone\.wav"):
        await player.play("broken", 60)
    assert player.status().playlist == "baseline"
    await until(lambda: deck_is(player, 0, state="Playing", volume=60))
    with pytest.raises(ValueError, match="volume"):
        await player.play("onset", 101)


async def test_a_stuck_audio_device_never_delays_duck(playlists):
    music = MusicPlayer(config(playlists), call_timeout_s=0.3)
    await music.start()
    try:
        await music.play("baseline", 60, crossfade_s=0)
        await until(lambda: deck_is(music, 0, state="Playing", volume=60))
        release = threading.Event()
        music._worker.submit(functools.partial(release.wait, 10))  # libvlc hangs
        try:
            async with asyncio.timeout(0.1):
                await music.duck()
                await music.set_volume(50)
            assert music.status().ducked
            # The ramp's call gives up; the player says why instead of blocking.
            await until(lambda: _async(music.status().reason is not None), within=2)
            assert "did not answer" in (music.status().reason or "")
        finally:
            release.set()
        await until(lambda: deck_is(music, 0, state="Playing", volume=20))
        await until(lambda: _async(music.status().reason is None))
    finally:
        await music.close()


async def _async(value: bool) -> bool:
    return value


async def test_libvlc_calls_stay_on_the_player_thread_and_events_hand_off(player):
    await player.play("baseline", 50, crossfade_s=0)
    worker = player._worker.thread
    assert worker is not None
    assert worker.daemon
    assert worker is not threading.current_thread()
    # A libvlc event arriving on another thread only schedules work on the loop.
    calls: list[tuple[int, str]] = []
    player._on_vlc_event = lambda deck, kind: calls.append((deck, kind))
    other = threading.Thread(target=player._vlc_event, args=(object(), 1, "probe"))
    other.start()
    other.join()
    assert calls == []
    await until(lambda: _async((1, "probe") in calls), within=1)


# -- libvlc missing, broken or disabled --------------------------------------------------------


async def exercise_unavailable(music: MusicPlayer) -> None:
    await music.play("baseline", 60)
    await music.set_volume(45, ramp_s=1)
    await music.duck()
    status = music.status()
    assert status.available is False
    assert (status.playlist, status.volume_pct, status.ducked, status.playing) == (
        "baseline",
        45,
        True,
        False,
    )
    assert status.output_volume_pct == 0
    await music.restore()
    await music.stop()
    assert music.status().playlist is None
    await music.close()


async def test_without_libvlc_the_player_says_so_and_every_call_works(
    playlists, monkeypatch, caplog
):
    def no_libvlc(*args: object) -> None:
        raise NameError("no function 'libvlc_new'")

    monkeypatch.setattr(vlc, "Instance", no_libvlc)
    music = MusicPlayer(config(playlists))
    with caplog.at_level(logging.WARNING, logger="sessiond.room.music"):
        await music.start()
        await music.start()
    assert not music.available
    assert music.reason == "libvlc is not installed (no function 'libvlc_new')"
    unavailable = [r.getMessage() for r in caplog.records if "unavailable" in r.getMessage()]
    assert unavailable == ["music unavailable: libvlc is not installed (no function 'libvlc_new')"]
    await exercise_unavailable(music)


async def test_an_instance_libvlc_refuses_is_reported(playlists):
    music = MusicPlayer(config(playlists, vlc_args=("--no-such-option-at-all",)))
    await music.start()
    assert not music.available
    assert music.reason == "libvlc could not initialise (options: --no-such-option-at-all)"
    await exercise_unavailable(music)


async def test_without_python_vlc_the_player_says_so(playlists, monkeypatch):
    monkeypatch.setitem(sys.modules, "vlc", None)
    music = MusicPlayer(config(playlists))
    await music.start()
    assert not music.available
    assert music.reason is not None
    assert music.reason.startswith("python-vlc cannot load libvlc")
    await exercise_unavailable(music)


async def test_disabled_music_never_loads_libvlc(playlists, monkeypatch):
    def must_not_load(*args: object) -> None:
        pytest.fail("libvlc loaded while disabled")

    monkeypatch.setattr(vlc, "Instance", must_not_load)
    music = MusicPlayer(config(playlists, enabled=False))
    await music.start()
    assert music.reason == "disabled in the configuration"
    await exercise_unavailable(music)


async def test_before_start_the_player_is_unavailable_and_safe(playlists):
    music = MusicPlayer(config(playlists))
    assert music.status().reason == "not started"
    await exercise_unavailable(music)


# -- the shipped playlists ---------------------------------------------------------------------


async def test_start_writes_the_ambient_library_and_the_shipped_playlists_play(
    tmp_path, monkeypatch
):
    for playlist in (REPO / "playlists").glob("*.m3u"):
        shutil.copy(playlist, tmp_path)
    # Short tracks: the shipped lengths take seconds to render.
    monkeypatch.setattr(
        music_module, "ensure_library", functools.partial(ensure_library, duration_s=2.0)
    )
    music = MusicPlayer(config(tmp_path, generate_ambient=True))
    await music.start()
    try:
        await music.play("effect", 50, crossfade_s=0)
        assert sorted(p.name for p in (tmp_path / "audio").iterdir())[:2] == [
            "baseline-1.wav",
            "baseline-2.wav",
        ]
        await until(lambda: deck_is(music, 0, state="Playing", volume=50))
        mrl = (await probe(music, 0)).mrl
        assert mrl is not None
        assert mrl.endswith("/audio/effect-1.wav")
    finally:
        await music.close()


async def test_closing_while_the_library_is_written_leaves_play_safe(tmp_path, monkeypatch):
    for playlist in (REPO / "playlists").glob("*.m3u"):
        shutil.copy(playlist, tmp_path)
    monkeypatch.setattr(
        music_module, "ensure_library", functools.partial(ensure_library, duration_s=2.0)
    )
    music = MusicPlayer(config(tmp_path, generate_ambient=True))
    await music.start()
    await music.close()
    await music.play("onset", 40)
    assert music.status().playlist == "onset"
    assert not music.status().playing


def test_config_defaults_keep_the_normal_audio_output():
    defaults = MusicConfig()
    assert defaults.vlc_args == ("--no-video", "--quiet")
    assert defaults.duck_volume_pct <= 30
    assert defaults.duck_ramp_s <= 1.0
    with pytest.raises(ValueError, match="extra"):
        MusicConfig.model_validate({"volume": 3})
