"""The room's own alarm speaker: the bursts it plays, what it plays when, real audio out of
libvlc, and `console_unwatched` raised by the daemon when no signed-in console watches."""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import math
import wave
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import numpy as np
import pytest

from sessiond.app import Daemon
from sessiond.bus import Bus
from sessiond.clock import LoopClock
from sessiond.config import parse_config
from sessiond.console.auth import hash_password
from sessiond.model import (
    AlarmState,
    AlarmTransition,
    AudioPause,
    Event,
    NurseAction,
    Priority,
)
from sessiond.room.alarm_tone import BURSTS, AlarmAudioConfig, AlarmTonePlayer, burst_wav

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

RATE = 22_050


def pulses(samples: np.ndarray, rate: int) -> list[tuple[float, float]]:
    """(start, length) in seconds of each pulse: 5 ms windows louder than a tenth of the peak."""
    win = rate // 200
    frames = np.abs(samples[: len(samples) // win * win].astype(float)).reshape(-1, win).max(1)
    loud = frames > frames.max() / 10
    out: list[tuple[float, float]] = []
    start = None
    for i, on in enumerate([*loud, False]):
        if on and start is None:
            start = i
        elif not on and start is not None:
            out.append((start * win / rate, (i - start) * win / rate))
            start = None
    return out


def read_wav(data: bytes) -> tuple[np.ndarray, int]:
    with wave.open(io.BytesIO(data)) as wav:
        rate = wav.getframerate()
        raw = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        return raw[:: wav.getnchannels()], rate


@pytest.mark.parametrize(
    ("priority", "groups", "pulse_s"),
    [(Priority.HIGH, [3, 2, 3, 2], 0.15), (Priority.MEDIUM, [3], 0.2), (Priority.LOW, [2], 0.2)],
)
def test_bursts_follow_iec_60601_1_8(priority: Priority, groups: list[int], pulse_s: float) -> None:
    """HIGH is 10 pulses (3+2, pause, 3+2), MEDIUM 3, LOW 2; a pitch with 4 harmonics."""
    samples, rate = read_wav(burst_wav(BURSTS[priority]))
    found = pulses(samples, rate)
    assert all(abs(length - pulse_s) <= 0.015 for _, length in found), found
    starts = [start for start, _ in found]
    gaps = np.diff(starts)
    # Pulses of a group are 250-300 ms apart; groups are further apart.
    split = [0, *(i + 1 for i, gap in enumerate(gaps) if gap > 0.32), len(starts)]
    assert [b - a for a, b in itertools.pairwise(split)] == groups
    spectrum = np.abs(np.fft.rfft(samples.astype(float)))
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    pitch = BURSTS[priority].pitch_hz
    peak = spectrum.max()
    for k in range(1, 6):  # the fundamental and four harmonics, within 15 dB of the strongest
        near = spectrum[np.abs(freqs - k * pitch) < 10].max()
        assert 20 * np.log10(near / peak) > -15, k
        assert 150 <= pitch <= 1000
        assert k == 1 or 300 <= k * pitch <= 4000


@pytest.mark.parametrize("priority", list(BURSTS))
def test_bursts_are_the_array_formula_sample_for_sample(priority: Priority) -> None:
    """The daemon synthesises the bursts without numpy; the samples are what the formula
    gives as arrays: the pitch and its harmonics, 10 ms ramps, the peak at 80 % of full scale
    (exact here; a vectorised `sin` elsewhere may differ in its last bit, which can move a
    truncated sample by one step)."""
    burst = BURSTS[priority]
    samples, rate = read_wav(burst_wav(burst))
    n = round(burst.pulse_s * rate)
    phase = 2 * math.pi * burst.pitch_hz * (np.arange(n) / rate)
    tone = sum(a * np.sin(phase * (k + 1)) for k, a in enumerate((1.0, 0.6, 0.45, 0.35, 0.25)))
    ramp = round(0.01 * rate)
    pulse = tone * np.minimum(1.0, np.minimum(np.arange(n) / ramp, (n - 1 - np.arange(n)) / ramp))
    total = np.zeros(round((burst.length_s + 0.05) * rate))
    for offset in burst.offsets:
        start = round(offset * rate)
        total[start : start + n] += pulse
    expected = (total / np.max(np.abs(total)) * 0.8 * 32767).astype("<i2")
    assert len(samples) == len(expected)
    assert int(np.abs(samples.astype(np.int64) - expected).max()) <= 1


class FakeOutput:
    """Records what the player asks of the speaker."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.changed = asyncio.Condition()

    async def open(self) -> str | None:
        return None

    async def _call(self, what: str) -> None:
        async with self.changed:
            self.calls.append(what)
            self.changed.notify_all()

    async def play(self, priority: Priority) -> None:
        await self._call(priority.label)

    async def stop(self) -> None:
        await self._call("stop")

    async def close(self) -> None:
        await self._call("close")

    async def until(self, ok: Callable[[list[str]], bool], timeout_s: float = 5.0) -> None:
        """Wait until the calls so far satisfy `ok`."""
        async with asyncio.timeout(timeout_s), self.changed:
            await self.changed.wait_for(lambda: ok(self.calls))


def alarm(
    alarm_id: str, priority: Priority, state: AlarmState = AlarmState.ACTIVE
) -> AlarmTransition:
    return AlarmTransition(t=0.0, alarm_id=alarm_id, priority=priority, state=state)


@pytest.fixture
async def speaker() -> AsyncIterator[tuple[Bus, AlarmTonePlayer, FakeOutput]]:
    bus, output = Bus(), FakeOutput()
    player = AlarmTonePlayer(
        AlarmAudioConfig(), room_id="r", reminder_s=1.0, now=lambda: 0.0, output=output
    )
    task = asyncio.create_task(player.run(bus.subscribe("speaker")))
    try:
        yield bus, player, output
    finally:
        bus.close()
        await asyncio.wait_for(task, 5)
    assert output.calls[-1] == "close"


async def test_the_room_sounds_high_alarms_and_no_console_watching(
    speaker: tuple[Bus, AlarmTonePlayer, FakeOutput],
) -> None:
    """Medium alarms stay in the consoles; a high one and `console_unwatched` sound in the
    room, the highest first; acknowledge and pause silence; reminders come back."""
    bus, player, output = speaker
    bus.publish(alarm("spo2_low", Priority.MEDIUM))
    async with asyncio.timeout(5):
        while "spo2_low" not in player.status.alarms:  # noqa: ASYNC110 - read until taken
            await asyncio.sleep(0.01)
    assert player.wanted() is None  # a medium alarm stays in the consoles
    bus.publish(alarm("console_unwatched", Priority.MEDIUM))
    await output.until(lambda calls: len(calls) >= 1)
    assert output.calls == ["medium"]
    assert player.wanted() is Priority.MEDIUM
    bus.publish(alarm("spo2_low", Priority.HIGH))
    await output.until(lambda calls: len(calls) >= 2)
    assert output.calls == ["medium", "high"]  # the higher priority takes the stream at once
    ack = NurseAction(t=0.0, action="ack", user="ana", source="console",
                      detail={"alarm_id": "spo2_low"})  # fmt: skip
    bus.publish(ack)
    await output.until(lambda calls: len(calls) >= 3)
    assert output.calls[-1] == "medium"  # the unwatched console still sounds
    bus.publish(AudioPause(t=0.0, paused=True, until_t=100.0, reason="nurse"))
    await output.until(lambda calls: calls[-1] == "stop")
    bus.publish(AudioPause(t=0.0, paused=False, reason="nurse"))
    bus.publish(alarm("console_unwatched", Priority.MEDIUM, AlarmState.CLEARED))
    output.calls.clear()
    # The acknowledged high alarm stays active: its reminder burst (reminder_s = 1 s).
    await output.until(lambda calls: "high" in calls)
    bus.publish(alarm("spo2_low", Priority.HIGH, AlarmState.CLEARED))
    async with asyncio.timeout(5):
        while "spo2_low" in player.status.alarms:  # noqa: ASYNC110 - read until taken
            await asyncio.sleep(0.01)
    output.calls.clear()
    # Nothing is left to remind of: a window longer than reminder_s stays silent.
    with contextlib.suppress(TimeoutError):
        await output.until(lambda calls: "high" in calls, timeout_s=1.5)
    assert output.calls in ([], ["stop"])


def libvlc_available() -> bool:
    try:
        import vlc  # noqa: PLC0415

        return vlc.Instance(["--quiet"]) is not None
    except (ImportError, OSError, NameError):
        return False


@pytest.mark.skipif(not libvlc_available(), reason="libvlc is not installed")
async def test_a_high_alarm_plays_real_audio_through_libvlc(tmp_path: Path) -> None:
    """Through libvlc (captured to a file), a high alarm is 10 pulses at its pitch."""
    out = tmp_path / "room.wav"
    config = AlarmAudioConfig(vlc_args=("--aout=afile", f"--audiofile-file={out}", "--quiet"))
    bus = Bus()
    player = AlarmTonePlayer(config, room_id="r", reminder_s=150, now=lambda: 0.0)
    task = asyncio.create_task(player.run(bus.subscribe("speaker")))
    bus.publish(alarm("spo2_low", Priority.HIGH))
    # The burst plays in real time on the audio output: let it play out whole.
    await asyncio.sleep(BURSTS[Priority.HIGH].length_s + 1.0)
    bus.close()
    await asyncio.wait_for(task, 10)
    samples, rate = read_wav(out.read_bytes())
    found = pulses(samples, rate)
    assert len(found) == 10, found
    spectrum = np.abs(np.fft.rfft(samples.astype(float)))
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    assert abs(freqs[spectrum.argmax()] - 523.25) < 5


async def test_no_console_watching_a_session_raises_console_unwatched(tmp_path: Path) -> None:
    """A running session with no signed-in page raises `console_unwatched` after the delay;
    a page connecting clears it, and the room's speaker plays it meanwhile."""
    config = parse_config(
        {
            "console": {
                "port": 0,
                "users": {"ana": {"password_hash": hash_password("pw", iterations=1000)}},
            },
            "records": {"path": str(tmp_path / "record.sqlite")},
            "music": {"enabled": False},
            "alarm_audio": {"unwatched_after_s": 0.5},
            "devices": {"spo2": {"decoder": "masimo-ascii1"}},
        },
        source="test",
    )
    daemon = Daemon(config=config, clock=LoopClock(), device_paths={"spo2": str(tmp_path / "no")})
    output = FakeOutput()
    daemon.alarm_audio._output = output
    events = daemon.bus.subscribe("test", maxsize=10_000)
    task = asyncio.create_task(daemon.run())

    async def unwatched(state: AlarmState) -> list[Event]:
        """Every event up to the next `console_unwatched` transition to `state`."""
        seen: list[Event] = []
        async with asyncio.timeout(10):
            while True:
                seen.append(await events.get())
                last = seen[-1]
                if (isinstance(last, AlarmTransition) and last.alarm_id == "console_unwatched"
                        and last.state is state):  # fmt: skip
                    return seen

    async def shown(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
        status = await (await http.get(f"{base}/api/status")).json()
        return {a["id"]: a for a in status["alarms"]}

    try:
        async with asyncio.timeout(10):
            while daemon.console_port is None:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        base = f"http://127.0.0.1:{daemon.console_port}"
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            r = await http.post(f"{base}/api/login", json={"user": "ana", "password": "pw"})
            assert r.status == 200
            r = await http.post(f"{base}/api/session/start", json={"route": "iv"})
            assert r.status == 200
            before = await unwatched(AlarmState.ACTIVE)
            # No session, nothing: raised only after the session started, on its delay.
            (start,) = [e for e in before if isinstance(e, NurseAction)
                        and e.action == "session_start"]  # fmt: skip
            assert before[-1].t >= start.t + 0.5
            shown_now = (await shown(http, base))["console_unwatched"]
            assert (shown_now["priority"], shown_now["state"]) == ("medium", "active")
            assert "medium" in output.calls
            async with http.ws_connect(f"{base}/ws") as ws:
                await ws.receive_json()
                await unwatched(AlarmState.CLEARED)  # a signed-in page watches
                assert "console_unwatched" not in await shown(http, base)
            await unwatched(AlarmState.ACTIVE)  # the page went away
            assert "console_unwatched" in await shown(http, base)
            r = await http.post(f"{base}/api/session/end", json={})
            assert r.status == 200
            assert "console_unwatched" not in await shown(http, base)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
