"""The serial link through a real pseudo-terminal and pyserial: read, unplug, replug, silence."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime

import pytest

from sessiond.clock import LoopClock
from sessiond.devices.contec import ContecV7Decoder
from sessiond.devices.link import SerialLink
from sessiond.devices.masimo import MasimoAscii1Decoder
from sessiond.model import DeviceStatus, Reading
from sessiond.sim.masimo import masimo_line
from sessiond.sim.pty import VirtualSerialPort

LINE = masimo_line(device_time=datetime(2026, 11, 22, 9, 0), spo2=97, pr=72, pi=2.5)  # noqa: DTZ001


class Recorder:
    """Collects what the link reports and lets a test wait for a condition."""

    def __init__(self) -> None:
        self.readings: list[Reading] = []
        self.status: list[DeviceStatus] = []
        self.bytes: list[tuple[str, bytes]] = []
        self._changed = asyncio.Event()

    def on_readings(self, readings: list[Reading]) -> None:
        self.readings += readings
        self._changed.set()

    def on_status(self, status: DeviceStatus) -> None:
        self.status.append(status)
        self._changed.set()

    def on_bytes(self, t: float, port: str, direction: str, data: bytes) -> None:
        self.bytes.append((direction, data))

    async def until(self, condition, within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            while not condition():
                self._changed.clear()
                await self._changed.wait()


@contextlib.asynccontextmanager
async def running(link: SerialLink):
    task = asyncio.create_task(link.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def keep_sending(port: VirtualSerialPort, data: bytes) -> None:
    """A device that sends a line every 50 ms, as long as the test needs it to."""
    while True:
        port.write(data)
        await asyncio.sleep(0.05)


def make_link(path: str, rec: Recorder, **kw) -> SerialLink:
    return SerialLink(name="spo2", path=path, decoder=MasimoAscii1Decoder(device="spo2"),
                      clock=LoopClock(), on_readings=rec.on_readings, on_status=rec.on_status,
                      on_bytes=rec.on_bytes, **kw)  # fmt: skip


async def test_reads_lines_unplug_is_reported_and_replug_reads_again(tmp_path):
    """The by-id name follows the device, as udev's symlink does when it re-enumerates."""
    by_id = tmp_path / "usb-Masimo_Rad-8-if00-port0"
    rec = Recorder()
    with VirtualSerialPort("spo2") as first:
        by_id.symlink_to(first.path)
        link = make_link(str(by_id), rec)
        async with running(link):
            sender = asyncio.create_task(keep_sending(first, LINE))
            await rec.until(lambda: len(rec.readings) >= 3)
            assert rec.readings[0].spo2 == 97
            assert rec.status[0].connected
            # Every byte read is handed on for the capture file, marked as from the device.
            assert {d for d, _ in rec.bytes} == {"<"}
            assert LINE in b"".join(data for _, data in rec.bytes)
            first.unplug()
            await rec.until(lambda: not rec.status[-1].connected)
            assert "port closed" in rec.status[-1].detail or "no data" in rec.status[-1].detail
            sender.cancel()
            before = len(rec.readings)
            with VirtualSerialPort("spo2") as second:
                by_id.unlink()
                by_id.symlink_to(second.path)
                sender = asyncio.create_task(keep_sending(second, LINE))
                await rec.until(lambda: len(rec.readings) > before and rec.status[-1].connected)
                sender.cancel()
    assert link.reopens >= 1
    assert [s.connected for s in rec.status][:3] == [True, False, True]


async def test_silence_is_a_lost_link(tmp_path):
    rec = Recorder()
    with VirtualSerialPort("spo2") as port:
        link = make_link(port.path, rec, silence_timeout_s=0.6)
        async with running(link):
            # Sent until read: pyserial flushes what came before the open.
            sender = asyncio.create_task(keep_sending(port, LINE))
            await rec.until(lambda: len(rec.readings) >= 1)
            sender.cancel()
            assert rec.status[-1].connected
            # The device stays plugged in but sends nothing more.
            await rec.until(lambda: not rec.status[-1].connected)
            assert rec.status[-1].detail == "no data for 0.6 s"


async def test_an_open_but_silent_port_does_not_flap(tmp_path, caplog):
    """Silence is reported once; reopening backs off and says nothing more until data flows."""
    rec = Recorder()
    with VirtualSerialPort("spo2") as port:
        # 20x: the 0.5 s watchdog floor is 10 s of session, each retry a few real tenths.
        link = SerialLink(name="spo2", path=port.path, decoder=MasimoAscii1Decoder(device="spo2"),
                          clock=LoopClock(speed=20), on_readings=rec.on_readings,
                          on_status=rec.on_status)  # fmt: skip
        opened: asyncio.Queue[None] = asyncio.Queue()
        link.on_open = lambda: opened.put_nowait(None)
        async with running(link):
            sender = asyncio.create_task(keep_sending(port, LINE))
            await rec.until(lambda: len(rec.readings) >= 1)
            sender.cancel()
            await rec.until(lambda: not rec.status[-1].connected)
            # Reopened and silent again, several times over: the port opens every time.
            async with asyncio.timeout(10):
                for _ in range(4):
                    await opened.get()
            assert [s.connected for s in rec.status] == [True, False]
            downs = [r for r in caplog.records if "no data" in r.getMessage()]
            assert len([r for r in downs if r.levelname == "WARNING"]) == 1
            # Valid data again: connected once more, and only then.
            sender = asyncio.create_task(keep_sending(port, LINE))
            await rec.until(lambda: rec.status[-1].connected, within=30)
            sender.cancel()
    assert [s.connected for s in rec.status] == [True, False, True]


async def test_a_missing_port_is_reported_once_then_found_when_plugged_in(tmp_path):
    by_id = tmp_path / "usb-Masimo_Rad-8-if00-port0"
    rec = Recorder()
    link = make_link(str(by_id), rec)
    async with running(link):
        await rec.until(lambda: len(rec.status) == 1)
        assert not rec.status[0].connected
        assert "cannot open" in rec.status[0].detail
        with VirtualSerialPort("spo2") as port:
            by_id.symlink_to(port.path)
            sender = asyncio.create_task(keep_sending(port, LINE))
            await rec.until(lambda: len(rec.readings) >= 1)
            sender.cancel()
    assert [s.connected for s in rec.status][:2] == [False, True]
    assert link.reopens >= 1


async def test_garbage_on_the_line_is_counted_and_skipped(tmp_path):
    rec = Recorder()
    with VirtualSerialPort("spo2") as port:
        link = make_link(port.path, rec)
        async with running(link):
            sender = asyncio.create_task(keep_sending(port, b"\xff\x00\x13junk" + LINE))
            await rec.until(lambda: len(rec.readings) >= 3)
            sender.cancel()
    assert link.decoder.bytes_skipped >= 3 * 6
    assert all(r.spo2 == 97 for r in rec.readings)


async def test_send_is_refused_while_down(tmp_path):
    rec = Recorder()
    link = make_link(str(tmp_path / "x"), rec)
    assert link.send(b":\x20\xa6") is False


@pytest.mark.parametrize("speed", [1.0, 50.0])
async def test_backoff_runs_on_session_time(tmp_path, speed):
    """At 50x, the 0.5 s first reopen delay takes 10 ms of real time."""
    by_id = tmp_path / "port"
    rec = Recorder()
    link = SerialLink(name="spo2", path=str(by_id), decoder=MasimoAscii1Decoder(device="spo2"),
                      clock=LoopClock(speed=speed), on_readings=rec.on_readings,
                      on_status=rec.on_status)  # fmt: skip
    loop = asyncio.get_running_loop()
    async with running(link):
        await rec.until(lambda: len(rec.status) == 1)
        down_at = loop.time()
        with VirtualSerialPort("spo2") as port:
            by_id.symlink_to(port.path)
            sender = asyncio.create_task(keep_sending(port, LINE))
            await rec.until(lambda: rec.status[-1].connected)
            sender.cancel()
    elapsed = loop.time() - down_at
    assert 0.5 / speed * 0.8 <= elapsed < 0.5 / speed + 0.5


async def test_contec_v7_is_started_and_kept_alive(tmp_path):
    """The V7.0 protocol streams only when asked: start after open, then a keep-alive."""
    start = bytes.fromhex("7D81A1808080808080")
    packet = bytes.fromhex("01E085B396C1E1FFFF")  # PR 65, SpO2 97
    rec = Recorder()
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[bytes] = asyncio.Queue()
    with VirtualSerialPort("ox") as port:
        assert port.host_fd is not None
        loop.add_reader(port.host_fd, lambda: commands.put_nowait(port.read()))
        try:
            # 50x: the 5 s keep-alive comes after 0.1 s of real time.
            link = SerialLink(name="ox", path=port.path, decoder=ContecV7Decoder(device="ox"),
                              clock=LoopClock(speed=50), on_readings=rec.on_readings,
                              on_status=rec.on_status)  # fmt: skip
            async with running(link):
                async with asyncio.timeout(10):
                    assert await commands.get() == start
                sender = asyncio.create_task(keep_sending(port, packet * 3))
                await rec.until(lambda: len(rec.readings) >= 1)
                assert (rec.readings[0].spo2, rec.readings[0].pr) == (97, 65)
                async with asyncio.timeout(10):
                    assert await commands.get() == start  # the keep-alive re-sends A1
                sender.cancel()
        finally:
            loop.remove_reader(port.host_fd)
