"""The room's own alarm speaker: IEC 60601-1-8 bursts on libvlc, beside the music, never in it.

An alarm must never depend on a browser tab (DESIGN §9): high alarms, and `console_unwatched`
(no signed-in console watching during a session), sound on the room's audio output. The
player follows its own bus subscription and plays, as one stream, the highest priority that
needs the room's speaker: shown, not acknowledged, and alarm audio not paused. An
acknowledged alarm whose condition stays sounds one burst again every `reminder_s`
(clinical.md §1.3, §5.1 [D]).

The bursts are WAV files the player writes at start (a pitch with four harmonics, IEC Table 4;
HIGH 10 pulses 3+2, pause, 3+2; MEDIUM 3), synthesised with `math`: a few seconds of mono
audio, once, which is no reason for the daemon to load numpy. They play on a libvlc instance
of their own, never on the music's players, so ducking or a stuck playlist never touches
them. Every libvlc call runs on the player's own thread with a timeout, as the music's do.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import io
import logging
import math
import shutil
import sys
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from sessiond.model import AlarmState, Priority
from sessiond.room.music import _Worker

# `[alarm_audio]` is defined in `sessiond.room.settings`; importing it from here still works.
from sessiond.room.settings import AlarmAudioConfig as AlarmAudioConfig  # noqa: PLC0414, TC001
from sessiond.status import RoomStatus

if TYPE_CHECKING:
    from collections.abc import Callable

    from sessiond.bus import Subscription

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Technical alarms that sound on the room's speaker whatever their priority.
ROOM_ALARMS = frozenset({"console_unwatched"})
#: A libvlc call that has not returned by then is given up on.
CALL_TIMEOUT_S = 5.0
SAMPLE_RATE = 22_050


@dataclass(frozen=True, slots=True)
class Burst:
    """One burst: pulse start offsets (s), pulse length (s), pitch (Hz), burst period (s)."""

    offsets: tuple[float, ...]
    pulse_s: float
    pitch_hz: float
    every_s: float

    @property
    def length_s(self) -> float:
        return self.offsets[-1] + self.pulse_s


#: The same bursts as the console page's (static/sound.js `BURSTS`), clinical.md §1.2.
BURSTS: dict[Priority, Burst] = {
    Priority.HIGH: Burst((0, 0.25, 0.5, 1.0, 1.25, 2.25, 2.5, 2.75, 3.25, 3.5), 0.15, 523.25, 6),
    Priority.MEDIUM: Burst((0, 0.3, 0.6), 0.2, 440.0, 8),
    Priority.LOW: Burst((0, 0.3), 0.2, 392.0, 20),
}
#: Relative amplitudes of the fundamental and four harmonics.
_HARMONICS = (1.0, 0.6, 0.45, 0.35, 0.25)


def burst_wav(burst: Burst, *, rate: int = SAMPLE_RATE) -> bytes:
    """The burst as a 16-bit mono WAV, each pulse with 10 ms ramps (no clicks).

    Sample by sample (about 30 ms for the three bursts, once at start), each value computed
    as element-wise array arithmetic would: the harmonics added in turn, never by `sum()`,
    which may compensate, and the scaled value truncated as a cast to int16 truncates.
    """
    n = round(burst.pulse_s * rate)
    ramp = round(0.01 * rate)
    omega = 2 * math.pi * burst.pitch_hz
    harmonics = [(k + 1, a) for k, a in enumerate(_HARMONICS)]
    sin = math.sin
    pulse: list[float] = []
    for i in range(n):
        phase = omega * (i / rate)
        tone = 0.0
        for k, a in harmonics:
            tone += a * sin(phase * k)
        pulse.append(tone * min(1.0, i / ramp, (n - 1 - i) / ramp))
    total = [0.0] * round((burst.length_s + 0.05) * rate)
    for offset in burst.offsets:
        start = round(offset * rate)
        end = start + n
        total[start:end] = [x + y for x, y in zip(total[start:end], pulse, strict=True)]
    peak = max(map(abs, total))
    pcm = array.array("h", [int(x / peak * 0.8 * 32767) for x in total])
    if sys.byteorder == "big":
        pcm.byteswap()  # WAV samples are little-endian
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm.tobytes())
    return out.getvalue()


class ToneOutput(Protocol):
    """Where bursts sound: libvlc in the daemon, a recorder in tests."""

    async def open(self) -> str | None:
        """Get ready; None, or why there is no sound."""

    async def play(self, priority: Priority) -> None: ...

    async def stop(self) -> None: ...

    async def close(self) -> None: ...


class VlcTones:
    """Bursts as WAV files on a libvlc instance and media player of their own."""

    def __init__(self, config: AlarmAudioConfig, *, call_timeout_s: float = CALL_TIMEOUT_S) -> None:
        self._config = config
        self._timeout = call_timeout_s
        self._worker = _Worker("sessiond-alarm-audio")
        self._dir: Path | None = None
        self._instance: Any = None
        self._player: Any = None
        self._media: dict[Priority, Any] = {}

    async def _call(self, fn: Callable[[], _T]) -> _T:
        return await asyncio.wait_for(asyncio.wrap_future(self._worker.submit(fn)), self._timeout)

    async def open(self) -> str | None:
        try:
            return await self._call(self._open)
        except TimeoutError:
            return f"libvlc did not start within {self._timeout:g} s"
        except Exception as exc:  # noqa: BLE001 - a foreign C library fails in many ways
            return f"libvlc failed: {exc!r}"

    def _open(self) -> str:
        try:
            import vlc  # noqa: PLC0415 - loaded lazily: the daemon runs without libvlc
        except (ImportError, OSError) as exc:
            return f"python-vlc cannot load libvlc: {exc}"
        try:
            instance = vlc.Instance(list(self._config.vlc_args))
        except NameError as exc:  # python-vlc without libvlc
            return f"libvlc is missing: {exc}"
        if instance is None:
            return f"libvlc refused the options {' '.join(self._config.vlc_args)}"
        self._dir = Path(tempfile.mkdtemp(prefix="sessiond-alarm-"))
        for priority, burst in BURSTS.items():
            path = self._dir / f"{priority.label}.wav"
            path.write_bytes(burst_wav(burst))
            self._media[priority] = instance.media_new(str(path))
        self._instance = instance
        self._player = instance.media_player_new()
        return ""

    async def play(self, priority: Priority) -> None:
        await self._call(lambda: self._play(priority))

    def _play(self, priority: Priority) -> None:
        self._player.stop()
        self._player.set_media(self._media[priority])
        self._player.play()
        self._player.audio_set_volume(self._config.volume_pct)

    async def stop(self) -> None:
        await self._call(self._player.stop)

    async def close(self) -> None:
        if self._player is not None:
            with contextlib.suppress(Exception):
                await self._call(self._close)
        self._worker.shutdown()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    def _close(self) -> None:
        self._player.stop()
        self._player.release()
        for media in self._media.values():
            media.release()
        self._instance.release()


class AlarmTonePlayer:
    """Sounds the room's alarms on `output`, one stream, the highest priority first."""

    def __init__(
        self,
        config: AlarmAudioConfig,
        *,
        room_id: str,
        reminder_s: float,
        now: Callable[[], float],
        output: ToneOutput | None = None,
        on_status: Callable[[bool, str], None] | None = None,
    ) -> None:
        self.config = config
        self.status = RoomStatus(room_id)
        self._reminder_s = reminder_s
        self._now = now
        self._output = output or VlcTones(config)
        self._on_status = on_status
        self._changed = asyncio.Event()
        self._available = False
        #: What sounded, for the log and tests: (loop time, priority label, why).
        self.played: list[tuple[float, str, str]] = []
        self._playing: tuple[Priority, float, bool] | None = None  # priority, until, reminder
        self._next_at = 0.0
        self._acked_at: dict[str, float] = {}

    def wanted(self) -> Priority | None:
        """The priority the room's speaker sounds now, or None."""
        if self._paused():
            return None
        best: Priority | None = None
        for alarm in self.status.alarms.values():
            if not self._for_room(alarm.alarm_id, alarm.priority):
                continue
            if alarm.alarm_id in self.status.acknowledged:
                continue
            if best is None or alarm.priority > best:
                best = alarm.priority
        return best

    @staticmethod
    def _for_room(alarm_id: str, priority: Priority) -> bool:
        return priority is Priority.HIGH or alarm_id in ROOM_ALARMS

    def _paused(self) -> bool:
        p = self.status.audio_pause
        return bool(p and p.paused and (p.until_t is None or p.until_t > self._now()))

    def _reminder(self, now: float) -> Priority | None:
        """An acknowledged room alarm whose condition stays, due for its reminder burst."""
        status = self.status
        for alarm_id in list(self._acked_at):
            if alarm_id not in status.acknowledged or alarm_id not in status.alarms:
                del self._acked_at[alarm_id]
        due: tuple[str, Priority] | None = None
        for alarm_id in status.acknowledged:
            alarm = status.alarms.get(alarm_id)
            if alarm is None or not self._for_room(alarm_id, alarm.priority):
                continue
            since = self._acked_at.setdefault(alarm_id, now)
            if alarm.state is not AlarmState.ACTIVE or now - since < self._reminder_s:
                continue
            if due is None or alarm.priority > due[1]:
                due = (alarm_id, alarm.priority)
        if due is None or self._paused():
            return None
        self._acked_at[due[0]] = now
        return due[1]

    async def run(self, sub: Subscription) -> None:
        """Follow the bus until it closes, sounding what the room needs."""
        reason = await self._output.open() if self.config.enabled else "disabled in [alarm_audio]"
        self._available = not reason
        if reason:
            logger.warning("alarm audio: the room's speaker is unavailable: %s", reason)
        else:
            logger.info("alarm audio: ready on the room's speaker")
        if self._on_status is not None:
            self._on_status(self._available, reason or "ready")
        follow = asyncio.create_task(self._follow(sub), name="sessiond.alarm_audio.follow")
        try:
            while not follow.done():
                delay = await self._step() if self._available else None
                self._changed.clear()
                waiter = asyncio.create_task(self._changed.wait())
                await asyncio.wait([waiter, follow], timeout=delay, return_when="FIRST_COMPLETED")
                waiter.cancel()
        finally:
            follow.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follow
            await self._output.close()

    async def _follow(self, sub: Subscription) -> None:
        async for event in sub:
            try:
                self.status.apply(event)
            except Exception:
                logger.exception("alarm audio: cannot fold %r", event)
            self._changed.set()

    async def _step(self) -> float:
        """Start, change or stop the stream; the seconds until it needs looking at again."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        want = self.wanted()
        playing = self._playing
        busy = playing is not None and now < playing[1]
        try:
            if want is None:
                if playing is not None and not playing[2]:
                    await self._stop(now)
                    playing = None
                    busy = False
                due = None if busy else self._reminder(now)
                if due is not None:
                    await self._play(due, now, reminder=True)
            elif (
                playing is None
                or playing[0] is not want
                or playing[2]
                or (not busy and now >= self._next_at)
            ):
                await self._play(want, now, reminder=False)
        except Exception:  # the speaker must not take the loop down; try again shortly
            logger.exception("alarm audio: libvlc call failed")
        return 0.25

    async def _play(self, priority: Priority, now: float, *, reminder: bool) -> None:
        burst = BURSTS[priority]
        self._playing = (priority, now + burst.length_s, reminder)
        self._next_at = now + burst.every_s
        self.played.append((now, priority.label, "reminder" if reminder else "alarm"))
        await self._output.play(priority)

    async def _stop(self, now: float) -> None:
        self._playing = None
        self.played.append((now, "", "silenced"))
        await self._output.stop()
