"""Music for the session phases on libvlc (python-vlc): playlists, ramps, crossfades, ducking.

Music is optional (DESIGN §2): libvlc is loaded lazily in `start()`, and when it is missing or
fails the player reports `available=False` with a reason, logs "music unavailable: ..." once,
and every call still works, recording what was asked.

Threading: every libvlc call runs, in order, on one thread the player owns, so an audio
device that hangs (python-vlc #74) never blocks the event loop, and each call is awaited with
a timeout so it never holds up the caller for long either. libvlc is not reentrant: its
event callbacks (a track ended, a track failed) only hand off to the event loop with
`call_soon_threadsafe` and touch neither libvlc nor the event they are given.

Two media players (decks) take turns: a phase change starts the new playlist on the idle deck
at volume 0 and ramps it up while the old deck ramps down, then stops. Ramps are asyncio
tasks that step the volume every `step_s`; a new ramp on a deck cancels the one running and
starts from the level reached. `duck` and `restore` never wait for libvlc: an alarm only
starts a ramp, and a stuck audio device cannot delay it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import functools
import logging
import os
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, TypeVar

from sessiond import shipped
from sessiond.room.ambient import ensure_library
from sessiond.room.playlist import Entry, Playlist, find_playlist, load_playlist

# `[music]` is defined in `sessiond.room.settings`; importing it from here still works.
from sessiond.room.settings import MusicConfig as MusicConfig  # noqa: PLC0414, TC001

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

logger = logging.getLogger(__name__)

T = TypeVar("T")
#: A python-vlc object (it ships no types): the one place libvlc is dynamically typed.
VlcObject: TypeAlias = Any

#: A libvlc call that has not returned by then is given up on (the thread may still be stuck).
CALL_TIMEOUT_S = 5.0
#: Volume steps of a ramp: smooth to the ear (a 3 s ramp is 60 steps), light for libvlc.
STEP_S = 0.05
_END, _ERROR, _PLAYING = "end", "error", "playing"


#: Where the shipped playlists are played from: a copy beside the ambient tracks made for
#: them, since the package itself may be read-only.
AMBIENT_DIR = shipped.cache_dir() / "ambient"


def copy_shipped_playlists(directory: Path) -> None:
    """Put the shipped playlists in `directory` (kept up to date with the package's)."""
    directory.mkdir(parents=True, exist_ok=True)
    for playlist in shipped.playlists_dir().glob("*.m3u"):
        target = directory / playlist.name
        text = playlist.read_bytes()
        if not target.exists() or target.read_bytes() != text:
            # Whole or not at all: another room's daemon on this machine may be reading it.
            partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            partial.write_bytes(text)
            partial.replace(target)


@dataclass(frozen=True, slots=True, kw_only=True)
class MusicStatus:
    """What the player is doing, for the console, MQTT `state` and the record."""

    available: bool
    #: Why music is unavailable (or that libvlc stopped answering); None when all is well.
    reason: str | None
    #: The playlist asked for (its name), even when unavailable; None after `stop`.
    playlist: str | None
    #: File name of the track playing now.
    track: str | None
    #: The volume asked for (%), before any ducking.
    volume_pct: int
    #: The volume the player is at now (%): mid-ramp, ducked, 0 when nothing plays.
    output_volume_pct: int
    ducked: bool
    playing: bool


class RampClock(Protocol):
    """Where ramps read the time: `LoopClock` (the daemon's, possibly sped up) or loop time."""

    def now(self) -> float: ...


class _LoopTime:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def now(self) -> float:
        return self._loop.time()


class _Worker:
    """One daemon thread running submitted calls in order: the only thread that calls libvlc.

    A daemon thread rather than a `ThreadPoolExecutor`: an executor's thread is joined at
    interpreter exit, so a libvlc call stuck in an audio driver would hang the shutdown.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._queue: queue.SimpleQueue[
            tuple[Callable[[], Any], concurrent.futures.Future[Any]] | None
        ] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def submit(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        if self._closed:
            future.set_exception(RuntimeError("music worker is shut down"))
            return future
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        self._queue.put((fn, future))
        return future

    def shutdown(self) -> None:
        self._closed = True
        self._queue.put(None)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            fn, future = item
            if not future.set_running_or_notify_cancel():
                continue  # given up on before it started
            try:
                result = fn()
            except Exception as exc:  # noqa: BLE001 - handed to the awaiting coroutine
                future.set_exception(exc)
            else:
                future.set_result(result)


@dataclass(slots=True, eq=False)
class _Deck:
    """One libvlc media player and the playlist it plays."""

    number: int
    mp: VlcObject = None
    #: Kept: the ctypes callback lives as long as python-vlc's EventManager object.
    events: VlcObject = None
    playlist: Playlist | None = None
    index: int = 0
    #: Volume (%) last asked of this deck, as a float so a slow ramp moves smoothly.
    level: float = 0.0
    applied: int | None = None
    ramp: asyncio.Task[None] | None = None
    #: Tracks that failed in a row: when every track fails, the deck stops.
    errors: int = 0

    @property
    def entry(self) -> Entry | None:
        return None if self.playlist is None else self.playlist.entries[self.index]


def _pct(value: float, what: str) -> int:
    if not 0 <= value <= 100:  # noqa: PLR2004
        msg = f"{what} must be 0-100 %, not {value}"
        raise ValueError(msg)
    return round(value)


class MusicPlayer:
    """The room's music: one playlist per phase on libvlc, with ramps, crossfades and ducking.

    Cheap to create; `await start()` loads libvlc. Every method is safe to call whether
    libvlc is available or not, before `start()` and after `close()`.
    """

    def __init__(
        self,
        config: MusicConfig,
        *,
        clock: RampClock | None = None,
        step_s: float = STEP_S,
        call_timeout_s: float = CALL_TIMEOUT_S,
        on_change: Callable[[MusicStatus], None] | None = None,
    ) -> None:
        self._config = config
        self._clock = clock
        self._step_s = step_s
        self._call_timeout_s = call_timeout_s
        self._on_change = on_change
        self._dir = Path(config.playlists_dir) if config.playlists_dir else AMBIENT_DIR
        self._worker = _Worker("sessiond-music")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._vlc: VlcObject = None
        self._instance: VlcObject = None
        self._decks = (_Deck(0), _Deck(1))
        self._active: _Deck | None = None
        self._available = False
        self._reason: str | None = "not started"
        self._stuck = False
        self._closed = False
        self._started = False
        self._playlist: str | None = None
        self._target = 0
        self._ducked = False
        self._duck_pct = config.duck_volume_pct
        self._lock = asyncio.Lock()
        self._library: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._notified: MusicStatus | None = None

    @property
    def available(self) -> bool:
        return self._available

    @property
    def reason(self) -> str | None:
        return self._reason

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Load libvlc (on the player's thread) and create the two decks; never raises.

        When libvlc is missing or fails, `available` stays False and `reason` says why.
        The ambient library is written in the background; `play` waits for it.
        """
        if self._started:
            return
        self._started = True
        self._loop = asyncio.get_running_loop()
        if self._clock is None:
            self._clock = _LoopTime(self._loop)
        if not self._config.enabled:
            self._unavailable("disabled in the configuration")
            return
        try:
            await self._call(self._vlc_open, tuple(self._config.vlc_args))
        except _VlcUnavailableError as exc:
            self._unavailable(str(exc))
            return
        except TimeoutError:
            self._unavailable(f"libvlc did not start within {self._call_timeout_s:g} s")
            return
        except Exception as exc:  # noqa: BLE001 - a foreign C library fails in many ways; music is optional
            self._unavailable(f"libvlc failed to start: {exc!r}")
            return
        self._available = True
        self._reason = None
        logger.info("music: libvlc ready (options %s)", " ".join(self._config.vlc_args) or "none")
        if self._config.generate_ambient or not self._config.playlists_dir:
            self._library = self._loop.create_task(
                self._write_library(), name="sessiond.music.library"
            )
        self._notify()

    async def close(self) -> None:
        """Stop at once and release libvlc; the player stays usable as an unavailable one."""
        if self._closed:
            return
        self._closed = True
        tasks = [*self._tasks, *(d.ramp for d in self._decks if d.ramp is not None)]
        if self._library is not None:
            tasks.append(self._library)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        was_available = self._available
        self._available = False
        self._reason = "closed"
        self._active = None
        if was_available:
            try:
                await self._call(self._vlc_close)
            except Exception:  # shutting down: report and go on
                logger.warning("music: libvlc did not close cleanly", exc_info=True)
        self._worker.shutdown()
        self._notify()

    # -- the API -----------------------------------------------------------------------------

    async def play(self, playlist: str, volume_pct: int, crossfade_s: float | None = None) -> None:
        """Play `playlist` (a name in `playlists_dir`, e.g. a phase) at `volume_pct`, looping.

        Crossfades from what is playing over `crossfade_s` (default from the config). The same
        playlist again only changes the volume. Raises `PlaylistError` (music unchanged) when
        the playlist is missing or unreadable, or lists a file that is missing.
        """
        volume = _pct(volume_pct, "volume")
        if self._library is not None and not self._library.done():
            # `wait`: a cancelled `play` leaves the generation running, and a generation
            # cancelled by `close` does not fail the `play`.
            await asyncio.wait([self._library])
        async with self._lock:
            # Files are only checked when they are going to be played.
            loaded = await asyncio.to_thread(self._load, playlist, check_files=self._available)
            self._playlist = loaded.name
            self._target = volume
            if not self._available:
                self._notify()
                return
            current = self._active
            if current is not None and current.playlist == loaded:
                self._ramp(current, self._effective(), self._config.ramp_s)
                self._notify()
                return
            fade = self._config.crossfade_s if crossfade_s is None else max(0.0, crossfade_s)
            new = self._decks[1] if current is self._decks[0] else self._decks[0]
            self._cancel_ramp(new)
            new.playlist, new.index, new.errors, new.level = loaded, 0, 0, 0.0
            self._active = new
            if current is not None:
                self._fade_out(current, fade)
            await self._start_entry(new)
            self._ramp(new, self._effective(), fade)
            self._notify()

    def _load(self, name: str, *, check_files: bool) -> Playlist:
        return load_playlist(find_playlist(self._dir, name), check_files=check_files)

    async def set_volume(self, volume_pct: int, ramp_s: float | None = None) -> None:
        """Change the target volume over `ramp_s`; while ducked, the output stays ducked."""
        self._target = _pct(volume_pct, "volume")
        if self._active is not None and self._available:
            self._ramp(self._active, self._effective(), self._ramp_s(ramp_s, self._config.ramp_s))
        self._notify()

    async def duck(self, level_pct: int | None = None, ramp_s: float | None = None) -> None:
        """Lower the music to `level_pct` (default `duck_volume_pct`, never above the target).

        Never waits for libvlc: it only starts ramps, so an alarm is never held up here.
        """
        self._duck_pct = (
            self._config.duck_volume_pct if level_pct is None else _pct(level_pct, "duck level")
        )
        self._ducked = True
        if self._available:
            seconds = self._ramp_s(ramp_s, self._config.duck_ramp_s)
            for deck in self._decks:
                if deck is self._active:
                    self._ramp(deck, self._effective(), seconds)
                elif deck.playlist is not None:
                    # A crossfade's old side goes now rather than fading at full level.
                    self._ramp(deck, 0.0, seconds, stop=True)
        self._notify()

    async def restore(self, ramp_s: float | None = None) -> None:
        """Undo `duck`: back to the target volume over `ramp_s` (default `restore_ramp_s`)."""
        if not self._ducked:
            return
        self._ducked = False
        if self._active is not None and self._available:
            self._ramp(
                self._active, self._effective(), self._ramp_s(ramp_s, self._config.restore_ramp_s)
            )
        self._notify()

    async def stop(self, fade_s: float | None = None) -> None:
        """Fade out over `fade_s` (default `ramp_s`) and stop; does not wait for the fade."""
        async with self._lock:
            self._playlist = None
            self._active = None
            if self._available:
                seconds = self._ramp_s(fade_s, self._config.ramp_s)
                for deck in self._decks:
                    if deck.playlist is not None:
                        self._fade_out(deck, seconds)
            self._notify()

    def status(self) -> MusicStatus:
        deck = self._active if self._available else None
        entry = None if deck is None else deck.entry
        return MusicStatus(
            available=self._available,
            reason=self._reason,
            playlist=self._playlist,
            track=None if entry is None else entry.name,
            volume_pct=self._target,
            output_volume_pct=0 if deck is None else round(deck.level),
            ducked=self._ducked,
            playing=entry is not None,
        )

    # -- volume ------------------------------------------------------------------------------

    def _effective(self) -> int:
        """The active deck's volume: the target, or the duck level while ducked (never above)."""
        return min(self._target, self._duck_pct) if self._ducked else self._target

    @staticmethod
    def _ramp_s(given: float | None, default: float) -> float:
        return default if given is None else max(0.0, given)

    def _fade_out(self, deck: _Deck, seconds: float) -> None:
        # While ducked, anything still sounding goes as fast as the duck.
        if self._ducked:
            seconds = min(seconds, self._config.duck_ramp_s)
        self._ramp(deck, 0.0, seconds, stop=True)

    def _cancel_ramp(self, deck: _Deck) -> None:
        if deck.ramp is not None:
            deck.ramp.cancel()
            deck.ramp = None

    def _ramp(self, deck: _Deck, to_pct: float, seconds: float, *, stop: bool = False) -> None:
        """Replace `deck`'s ramp by one from its current level to `to_pct` over `seconds`."""
        assert self._loop is not None
        self._cancel_ramp(deck)
        deck.ramp = self._loop.create_task(
            self._run_ramp(deck, to_pct, seconds, stop=stop),
            name=f"sessiond.music.ramp{deck.number}",
        )

    async def _run_ramp(self, deck: _Deck, to_pct: float, seconds: float, *, stop: bool) -> None:
        assert self._clock is not None
        start, t0 = deck.level, self._clock.now()
        try:
            while True:
                done = 1.0 if seconds <= 0 else min(1.0, (self._clock.now() - t0) / seconds)
                try:
                    await self._set_level(deck, start + (to_pct - start) * done)
                except TimeoutError:
                    pass  # libvlc is stuck (`_call` reported it): retry with the level then due
                else:
                    if done >= 1.0:
                        break
                await asyncio.sleep(self._step_s)
            if stop:
                while True:
                    try:
                        await self._call(self._vlc_stop, deck.mp)
                        break
                    except TimeoutError:
                        await asyncio.sleep(self._step_s)
                deck.playlist, deck.index = None, 0
                self._notify()
        except Exception:  # a failing libvlc must not end the daemon: the next ramp tries again
            logger.warning("music: volume ramp on deck %d failed", deck.number, exc_info=True)

    async def _set_level(self, deck: _Deck, level: float) -> None:
        # The level first: a ramp that replaces this one starts from it even if this call is
        # still queued, and the worker's order keeps the calls in sequence.
        deck.level = level
        volume = round(level)
        if volume == deck.applied:
            return
        deck.applied = None  # until libvlc confirms, so a timed-out step is sent again
        if await self._call(self._vlc_set_volume, deck.mp, volume):
            deck.applied = volume
        # False: no audio output yet; the next step, or the Playing event, sets it again.

    # -- tracks ------------------------------------------------------------------------------

    async def _start_entry(self, deck: _Deck) -> None:
        entry = deck.entry
        assert entry is not None
        deck.applied = round(deck.level)
        try:
            await self._call(self._vlc_play, deck.mp, entry, deck.applied)
        except Exception:  # the next track or phase tries again
            logger.warning("music: cannot start %s", entry.name, exc_info=True)

    def _vlc_event(self, _event: object, deck_number: int, kind: str) -> None:
        """A libvlc event, on a libvlc thread: hand off to the loop, nothing else.

        No libvlc call here (not reentrant) and no use of `_event` (C memory, gone on return).
        """
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: shutting down
            loop.call_soon_threadsafe(self._on_vlc_event, deck_number, kind)

    def _on_vlc_event(self, deck_number: int, kind: str) -> None:
        deck = self._decks[deck_number]
        if deck.playlist is None or not self._available:
            return
        if kind == _PLAYING:
            # A stopped player has no audio output until it plays again, and a volume set
            # meanwhile is lost: set it again now the output exists.
            self._spawn(self._reapply(deck))
            return
        if deck is not self._active:
            return  # a deck fading out may run out: its ramp stops it
        if kind == _ERROR:
            deck.errors += 1
            entry = deck.entry
            logger.warning("music: %s cannot be played, skipped", entry.name if entry else "?")
            if deck.errors >= len(deck.playlist.entries):
                logger.error(
                    "music: no track of playlist %s plays; music stopped", deck.playlist.name
                )
                self._active = None
                self._fade_out(deck, 0.0)
                self._notify()
                return
        else:
            deck.errors = 0
        self._spawn(self._advance(deck, deck.playlist))

    async def _reapply(self, deck: _Deck) -> None:
        deck.applied = None
        try:
            await self._set_level(deck, deck.level)
        except Exception:  # the next ramp step sets it again
            logger.warning("music: cannot set the volume of deck %d", deck.number, exc_info=True)

    async def _advance(self, deck: _Deck, playlist: Playlist) -> None:
        index = (deck.index + 1) % len(playlist.entries)
        try:
            started = await self._call(
                functools.partial(
                    self._vlc_play,
                    deck.mp,
                    playlist.entries[index],
                    round(deck.level),
                    only_after_end=True,
                )
            )
        except Exception:  # skipped: the next end event moves on
            logger.warning("music: cannot start the next track of %s", playlist.name, exc_info=True)
            return
        # A stale event (the deck was restarted or stopped meanwhile) starts nothing.
        if started and deck.playlist is playlist:
            deck.index = index
            self._notify()

    # -- libvlc, on the worker thread only ---------------------------------------------------

    def _vlc_open(self, args: tuple[str, ...]) -> None:
        try:
            import vlc  # noqa: PLC0415 - loaded lazily: the daemon runs without libvlc
        except (ImportError, OSError, NotImplementedError) as exc:
            msg = f"python-vlc cannot load libvlc: {exc}"
            raise _VlcUnavailableError(msg) from exc
        except SystemExit as exc:  # python-vlc exits when its environment names no library
            msg = "python-vlc cannot load libvlc (PYTHON_VLC_LIB_PATH or _MODULE_PATH is wrong)"
            raise _VlcUnavailableError(msg) from exc
        try:
            instance = vlc.Instance(list(args))
        except (NameError, OSError, AttributeError) as exc:
            # No libvlc.so: python-vlc imports, then fails on the first C function.
            msg = f"libvlc is not installed ({exc})"
            raise _VlcUnavailableError(msg) from exc
        if instance is None:
            msg = f"libvlc could not initialise (options: {' '.join(args) or 'none'})"
            raise _VlcUnavailableError(msg)
        self._vlc, self._instance = vlc, instance
        for deck in self._decks:
            deck.mp = instance.media_player_new()
            deck.events = deck.mp.event_manager()
            events = vlc.EventType
            deck.events.event_attach(
                events.MediaPlayerEndReached, self._vlc_event, deck.number, _END
            )
            deck.events.event_attach(
                events.MediaPlayerEncounteredError, self._vlc_event, deck.number, _ERROR
            )
            deck.events.event_attach(
                events.MediaPlayerPlaying, self._vlc_event, deck.number, _PLAYING
            )

    def _vlc_play(
        self, mp: VlcObject, entry: Entry, volume: int, *, only_after_end: bool = False
    ) -> bool:
        if only_after_end and mp.get_state() not in (self._vlc.State.Ended, self._vlc.State.Error):
            return False
        if entry.path is not None:
            media = self._instance.media_new_path(str(entry.path))
        else:
            media = self._instance.media_new_location(entry.url)
        # The volume before playing: the output must not start at the last track's or at 100 %.
        mp.audio_set_volume(volume)
        mp.set_media(media)
        media.release()
        return bool(mp.play() == 0)

    def _vlc_set_volume(self, mp: VlcObject, volume: int) -> bool:
        return bool(mp.audio_set_volume(volume) == 0)

    def _vlc_stop(self, mp: VlcObject) -> None:
        # A stopped player drops its audio output and plays again at the volume it last had:
        # leave it at 0 so the next start fades in instead of starting loud.
        mp.audio_set_volume(0)
        mp.stop()

    def _vlc_close(self) -> None:
        events = self._vlc.EventType
        for deck in self._decks:
            deck.events.event_detach(events.MediaPlayerEndReached)
            deck.events.event_detach(events.MediaPlayerEncounteredError)
            deck.events.event_detach(events.MediaPlayerPlaying)
            deck.mp.stop()
            deck.mp.release()
        self._instance.release()

    # -- plumbing ----------------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: object) -> T:
        """Run `fn(*args)` on the libvlc thread; TimeoutError after `call_timeout_s`."""
        future = asyncio.wrap_future(self._worker.submit(functools.partial(fn, *args)))
        try:
            async with asyncio.timeout(self._call_timeout_s):
                result = await future
        except TimeoutError:
            if not self._stuck:
                self._stuck = True
                self._reason = f"libvlc did not answer within {self._call_timeout_s:g} s"
                logger.warning("music: %s (audio device stuck?)", self._reason)
                self._notify()
            raise
        if self._stuck:
            self._stuck = False
            self._reason = None if self._available else self._reason
            logger.info("music: libvlc answers again")
            self._notify()
        return result

    async def _write_library(self) -> None:
        directory = self._dir / "audio"
        try:
            if not self._config.playlists_dir:
                await asyncio.to_thread(copy_shipped_playlists, self._dir)
            if not self._config.generate_ambient:
                return
            written = await asyncio.to_thread(ensure_library, directory)
        except Exception:  # a read-only disk must not stop the daemon; `play` names the files
            logger.exception("music: cannot write the ambient tracks to %s", directory)
            return
        if written:
            logger.info("music: wrote %d ambient tracks to %s", len(written), directory)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro, name="sessiond.music.track")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _unavailable(self, reason: str) -> None:
        self._available = False
        self._reason = reason
        logger.warning("music unavailable: %s", reason)
        self._notify()

    def _notify(self) -> None:
        """Tell `on_change` about a change, except the steps of a ramp."""
        if self._on_change is None:
            return
        status = self.status()
        key = dataclasses.replace(status, output_volume_pct=0)
        if key == self._notified:
            return
        self._notified = key
        try:
            self._on_change(status)
        except Exception:
            logger.exception("music: status listener failed")


class _VlcUnavailableError(Exception):
    """libvlc cannot be used; the message is the reason shown to nurses and in the log."""
