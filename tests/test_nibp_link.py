"""The SunTech command layer against the simulated module, over a real pseudo-terminal."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Literal

import pytest

from sessiond.clock import LoopClock
from sessiond.config import NibpConfig
from sessiond.devices.link import SerialLink
from sessiond.devices.nibp import NibpLink
from sessiond.devices.suntech import Ack, AckCode, SuntechAdvantageDecoder
from sessiond.model import DeviceStatus, NibpFailed, Reading
from sessiond.sim.scenario import BpFailure, Scenario
from sessiond.sim.simulator import Simulator

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

#: Session seconds per real second: a 25-45 s measurement takes about a second.
SPEED = 40.0
START = bytes.fromhex("3a20a6")
CUFF = bytes.fromhex("3a79050048")
RESULT = bytes.fromhex("3a7903004a")
ABORT = bytes.fromhex("3a7901004c")


class Host:
    """A daemon's view of one BP module: readings, link states, failures, bytes sent."""

    def __init__(self, path: str, clock: LoopClock, config: NibpConfig | None = None) -> None:
        self.readings: asyncio.Queue[Reading] = asyncio.Queue()
        self.statuses: asyncio.Queue[DeviceStatus] = asyncio.Queue()
        self.failures: asyncio.Queue[NibpFailed] = asyncio.Queue()
        self.sent: list[bytes] = []
        #: Commands with their session times.
        self.sent_at: list[tuple[float, bytes]] = []
        #: Called with each reading inside the port's data callback, as the daemon's monitor is.
        self.on_reading: Callable[[Reading], None] | None = None
        self.running: asyncio.Task[None] | None = None
        self._sent_more = asyncio.Event()
        #: Set each time the link has decoded bytes from the port.
        self.fed = asyncio.Event()
        self.link = SerialLink(
            name="nibp",
            path=path,
            decoder=SuntechAdvantageDecoder(device="nibp"),
            clock=clock,
            on_readings=self._readings,
            on_status=self.statuses.put_nowait,
            on_bytes=self._bytes,
        )
        self.nibp = NibpLink(
            link=self.link,
            clock=clock,
            config=config or NibpConfig(),
            on_failed=self.failures.put_nowait,
        )
        self.link.on_open = self.nibp.on_open
        self.link.on_fed = self._fed

    def _fed(self) -> None:
        self.nibp.on_fed()
        self.fed.set()

    def start(self) -> None:
        self.running = asyncio.create_task(self.link.run())

    def _readings(self, readings: list[Reading]) -> None:
        for reading in readings:
            self.readings.put_nowait(reading)
            if self.on_reading is not None:
                self.on_reading(reading)

    def _bytes(self, t: float, _port: str, direction: str, data: bytes) -> None:
        if direction == ">":
            self.sent.append(data)
            self.sent_at.append((t, data))
            self._sent_more.set()

    async def until_sent(self, command: bytes, count: int = 1) -> None:
        """Wait until `command` has been sent `count` times."""
        async with asyncio.timeout(10):
            while self.sent.count(command) < count:
                self._sent_more.clear()
                await self._sent_more.wait()

    async def status(self) -> DeviceStatus:
        return await asyncio.wait_for(self.statuses.get(), 10)


@contextlib.asynccontextmanager
async def module(
    answer: Literal["error", "none", "ack_only"] | None = None,
    count: int = 1,
    link_dir: Path | None = None,
    *,
    run_link: bool = True,
    config: NibpConfig | None = None,
) -> AsyncIterator[tuple[Host, Simulator]]:
    events = () if answer is None else (BpFailure(kind="bp_failure", at_s=0, answer=answer,
                                                  count=count),)  # fmt: skip
    scenario = Scenario(name="nibp", seed=3, duration_s=3600, events=events)
    clock = LoopClock(speed=SPEED)
    with Simulator(scenario=scenario, clock=clock, devices={"nibp": "suntech-advantage"},
                   link_dir=link_dir) as sim:  # fmt: skip
        playing = asyncio.create_task(sim.run())
        host = Host(sim.ports["nibp"].path, clock, config)
        if run_link:
            host.start()
        try:
            yield host, sim
        finally:
            await host.nibp.close()
            tasks = [playing] if host.running is None else [host.running, playing]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_measurement_on_request_gives_a_reading():
    async with module() as (host, _sim):
        # The module is silent until spoken to: the probe at open is what says it is there.
        status = await host.status()
        assert (status.connected, status.detail) == (True, "answering")
        assert host.nibp.measure("test")
        reading = await asyncio.wait_for(host.readings.get(), 10)
        assert reading.device == "nibp"
        assert reading.sys is not None
        assert reading.dia is not None
        assert 90 <= reading.sys <= 160
        assert reading.dia < reading.sys
        assert host.failures.empty()
        assert bytes.fromhex("3a20a6") in host.sent  # start
        assert bytes.fromhex("3a79050048") in host.sent  # cuff pressure polls
        assert bytes.fromhex("3a7903004a") in host.sent  # get BP data
        await asyncio.wait_for(_idle(host), 5)
        assert host.nibp.measurements == 1


async def test_an_error_code_comes_as_a_reading_without_values_not_a_second_failure():
    async with module("error") as (host, _sim):
        await host.status()
        host.nibp.measure("test")
        reading = await asyncio.wait_for(host.readings.get(), 10)
        assert (reading.sys, reading.dia, reading.map) == (None, None, None)
        assert reading.flags  # 0x02 erratic signal → artifact
        await asyncio.wait_for(_idle(host), 5)
        assert host.failures.empty()  # the monitor counts it from the reading


async def test_an_unanswered_start_is_a_failure_and_a_lost_module_that_comes_back():
    async with module("none") as (host, _sim):
        assert (await host.status()).connected
        host.nibp.measure("test")
        failure = await asyncio.wait_for(host.failures.get(), 10)
        assert "did not answer" in failure.detail
        lost = await host.status()
        assert not lost.connected
        assert "did not answer" in lost.detail
        # The port is reopened and probed: the module answers again.
        assert (await host.status()).connected
        await asyncio.wait_for(_idle(host), 5)
        assert host.nibp.measure("retry")
        reading = await asyncio.wait_for(host.readings.get(), 10)
        assert reading.sys is not None


async def test_no_result_in_time_aborts_and_fails():
    async with module("ack_only") as (host, _sim):
        await host.status()
        host.nibp.config = NibpConfig(measurement_timeout_s=60)
        host.nibp.measure("test")
        failure = await asyncio.wait_for(host.failures.get(), 10)
        assert failure.detail == "no result within 60 s"
        assert bytes.fromhex("3a7901004c") in host.sent  # abort: the cuff deflates
        assert host.statuses.empty()  # it answered every poll: not lost


async def test_cancel_aborts_a_running_measurement():
    async with module() as (host, _sim):
        await host.status()
        assert not host.nibp.cancel()  # nothing to cancel
        host.nibp.measure("test")
        # Cancel once the module has taken the start: a cuff poll after the probe at open.
        await host.until_sent(CUFF, 2)
        assert host.nibp.cancel()
        failure = await asyncio.wait_for(host.failures.get(), 10)
        assert failure.detail == "measurement aborted"
        assert bytes.fromhex("3a7901004c") in host.sent
        await asyncio.wait_for(_idle(host), 5)
        assert host.nibp.measurements == 0


async def test_a_cable_pulled_mid_measurement_fails_it_and_the_new_port_is_not_blamed(
    tmp_path: Path,
) -> None:
    async with module(link_dir=tmp_path) as (host, sim):
        assert (await host.status()).connected
        host.nibp.measure("test")
        await host.until_sent(CUFF, 2)
        sim.unplug("nibp")
        assert not (await host.status()).connected
        sim.replug("nibp")
        failure = await asyncio.wait_for(host.failures.get(), 10)
        assert failure.detail == "the link was lost during the measurement"
        assert (await host.status()).connected  # the probe of the new port is answered
        assert not host.nibp.measuring
        assert host.nibp.measure("again")
        reading = await asyncio.wait_for(host.readings.get(), 10)
        assert reading.sys is not None
        assert host.statuses.empty()  # the old measurement's timeout blamed nothing


async def test_a_request_during_a_measurement_is_queued_and_a_later_one_replaces_it():
    async with module() as (host, _sim):
        await host.status()
        assert host.nibp.measure("schedule")
        assert not host.nibp.measure("bp_high")  # one at a time: this one waits its turn
        assert not host.nibp.measure("nurse")
        assert host.nibp.queued == "nurse"
        assert host.nibp.measuring


@pytest.mark.parametrize("answer", [None, "error"])
async def test_a_request_made_from_the_result_starts_right_after_it(answer):
    """The daemon's re-measure after a `bp_high` alarm: the monitor asks inside the result's
    callback, before the measurement that produced it has ended; the next start command
    follows that result at once (after a failed measurement too), not an interval later."""
    async with module(answer) as (host, _sim):
        await host.status()
        asked: list[bool] = []

        def remeasure(_reading: Reading) -> None:
            if not asked:  # once: the second result asks for nothing
                asked.append(host.nibp.measure("bp_high"))

        host.on_reading = remeasure
        assert host.nibp.measure("schedule")
        first = await asyncio.wait_for(host.readings.get(), 10)
        assert (first.sys is None) == (answer == "error")
        second = await asyncio.wait_for(host.readings.get(), 10)
        assert second.sys is not None
        assert asked == [False]  # queued: the first measurement was still running
        commands = [command for _t, command in host.sent_at]
        first_result = commands.index(RESULT)
        t_next, command_next = host.sent_at[first_result + 1]
        assert command_next == START
        assert t_next - first.t < NibpConfig().command_timeout_s
        await asyncio.wait_for(_idle(host), 5)
        assert host.nibp.measurements == 2
        assert host.failures.empty()


async def test_a_request_queued_behind_a_measurement_that_lost_the_module_waits_for_it():
    """The start goes unanswered: the link is lost and reopened; the queued request is made
    once the new port's probe is answered."""
    async with module("none") as (host, _sim):
        assert (await host.status()).connected
        host.nibp.measure("schedule")
        assert not host.nibp.measure("bp_high")
        failure = await asyncio.wait_for(host.failures.get(), 10)
        assert "did not answer" in failure.detail
        assert not (await host.status()).connected
        assert (await host.status()).connected
        reading = await asyncio.wait_for(host.readings.get(), 10)
        assert reading.sys is not None
        await asyncio.wait_for(_idle(host), 5)
        assert host.failures.empty()
        assert host.sent.count(START) == 2


async def test_a_measurement_asked_as_the_port_opens_waits_for_the_probe():
    """A session started as the daemon starts: the first baseline BP is not lost to a probe
    that shares its waiter (and "times out" though the module answered)."""
    async with module(run_link=False) as (host, _sim):
        opened = host.link.on_open
        assert opened is not None

        def open_and_measure() -> None:
            opened()
            host.nibp.measure("baseline")

        host.link.on_open = open_and_measure
        host.start()
        reading = await asyncio.wait_for(host.readings.get(), 10)
        assert reading.sys is not None
        await asyncio.wait_for(_idle(host), 5)
        status = await host.status()
        assert (status.connected, status.detail) == (True, "answering")
        assert host.statuses.empty()  # never lost
        assert host.link.reopens == 0
        assert host.failures.empty()
        assert host.sent[:2] == [CUFF, START]  # the probe, answered, then the start


async def test_a_measurement_asked_before_the_port_opens_is_made_once_it_opens():
    """A resumed session asks for BP before the links have opened their ports."""
    config = NibpConfig(command_timeout_s=30)  # the port opens well within it, however loaded
    async with module(run_link=False, config=config) as (host, _sim):
        assert not host.nibp.measure("resume")
        assert _queued(host) == "resume"
        host.start()
        reading = await asyncio.wait_for(host.readings.get(), 10)
        assert reading.sys is not None
        await asyncio.wait_for(_idle(host), 5)
        assert host.failures.empty()
        assert (host.nibp.queued, host.nibp._deadline) == (None, None)
        assert host.sent[:2] == [CUFF, START]


async def test_a_measurement_for_a_port_that_stays_closed_fails_once(tmp_path: Path) -> None:
    clock = LoopClock(speed=SPEED)
    host = Host(str(tmp_path / "no-such-port"), clock)
    host.start()
    try:
        assert not host.nibp.measure("resume")
        assert not host.nibp.measure("baseline")  # one request: the later reason
        failure = await asyncio.wait_for(host.failures.get(), 10)
        assert failure.detail == "not measured (baseline): nibp is not connected"
        assert failure.t >= NibpConfig().command_timeout_s
        assert host.nibp.queued is None
        assert host.nibp._deadline is None  # nothing left to report a second time
        assert host.failures.empty()
        # cancel() drops a request that waits for the port, and its deadline with it.
        assert not host.nibp.measure("again")
        assert host.nibp.cancel()
        assert (host.nibp.queued, host.nibp._deadline) == (None, None)
        assert not host.nibp.cancel()
    finally:
        await host.nibp.close()
        assert host.running is not None
        host.running.cancel()
        await asyncio.gather(host.running, return_exceptions=True)


async def test_a_request_queued_when_the_cable_is_pulled_is_made_on_the_new_port(
    tmp_path: Path,
) -> None:
    config = NibpConfig(command_timeout_s=30)  # the replug comes well within it
    async with module(link_dir=tmp_path, config=config) as (host, sim):
        assert (await host.status()).connected
        host.nibp.measure("schedule")
        await host.until_sent(CUFF, 2)
        assert not host.nibp.measure("bp_high")
        sim.unplug("nibp")
        assert not (await host.status()).connected
        sim.replug("nibp")
        failure = await asyncio.wait_for(host.failures.get(), 20)
        assert failure.detail == "the link was lost during the measurement"
        assert (await host.status()).connected
        reading = await asyncio.wait_for(host.readings.get(), 20)
        assert reading.sys is not None
        await asyncio.wait_for(_idle(host), 5)
        assert host.failures.empty()
        assert host.statuses.empty()
        assert host.nibp.measurements == 1


async def test_cancel_also_drops_a_queued_request():
    async with module() as (host, _sim):
        await host.status()
        host.nibp.measure("schedule")
        await host.until_sent(CUFF, 2)
        assert not host.nibp.measure("bp_high")
        assert host.nibp.cancel()
        assert host.nibp.queued is None
        failure = await asyncio.wait_for(host.failures.get(), 10)
        assert failure.detail == "measurement aborted"
        await asyncio.wait_for(_idle(host), 5)
        assert host.sent.count(START) == 1
        assert host.failures.empty()


async def test_close_drops_a_queued_request_and_deflates_the_cuff():
    async with module() as (host, _sim):
        await host.status()
        host.nibp.measure("schedule")
        await host.until_sent(CUFF, 2)
        assert not host.nibp.measure("bp_high")
        await host.nibp.close()
        assert host.nibp.queued is None
        assert not host.nibp.measuring
        assert host.sent[-1] == ABORT  # the cuff deflates
        assert host.sent.count(START) == 1
        assert not host.nibp.measure("late")  # closed: nothing starts or waits any more
        assert (host.nibp.queued, host.nibp._deadline) == (None, None)
        assert host.failures.empty()


async def test_a_cut_frame_during_a_measurement_does_not_hold_back_the_replies():
    """`>` and the length of the 67-byte return string, then nothing: the module's next
    replies are decoded as they come (the polls are answered: the module is not lost)."""
    async with module() as (host, sim):
        await host.status()
        host.nibp.measure("schedule")
        await host.until_sent(CUFF, 2)
        sim.ports["nibp"].write(b">\x43")
        reading = await asyncio.wait_for(host.readings.get(), 10)
        assert reading.sys is not None
        await asyncio.wait_for(_idle(host), 5)
        assert host.failures.empty()
        assert host.statuses.empty()  # not lost
        assert host.link.reopens == 0
        decoder = host.nibp.decoder
        assert (decoder.frames_bad, decoder.bytes_skipped, decoder.records) == (1, 2, 1)


async def test_a_cut_frame_left_on_the_line_is_dropped_before_the_next_command():
    """Its rest must not be taken from the next answer: here `> 05` and a byte that would
    make a checksummed cuff pressure of it with the first two bytes of the `O` to come."""
    async with module() as (host, sim):
        await host.status()
        assert host.nibp.measure("first")
        assert (await asyncio.wait_for(host.readings.get(), 10)).sys is not None
        await asyncio.wait_for(_idle(host), 5)
        cut = bytes([0x3E, 0x05, -(0x3E + 0x05 + 0x3E + 0x04) & 0xFF])
        host.fed.clear()
        sim.ports["nibp"].write(cut)
        await asyncio.wait_for(host.fed.wait(), 10)
        assert host.nibp.decoder._pending == cut  # the module fell silent mid-frame
        assert host.nibp.measure("second")
        reading = await asyncio.wait_for(host.readings.get(), 10)
        assert reading.sys is not None
        await asyncio.wait_for(_idle(host), 5)
        assert host.failures.empty()
        assert host.statuses.empty()
        decoder = host.nibp.decoder
        assert (decoder.frames_bad, decoder.bytes_skipped, decoder.records) == (1, 3, 2)


def _queued(host: Host) -> str | None:
    return host.nibp.queued  # a call: what it says now, not what mypy narrowed it to before


async def _idle(host: Host) -> None:
    """Until no measurement runs (a queued one may start as the last one ends)."""
    while host.nibp.measuring:
        task = host.nibp._task
        assert task is not None
        await asyncio.wait({task})


async def test_an_answer_in_the_loop_turn_its_timeout_ends_is_not_lost(tmp_path: Path) -> None:
    """At high speed a command's timeout and the module's answer can fall due in the same
    loop turn: the answer counts (at 600x it was lost, and a `K` with it: `nibp_error`)."""
    clock = LoopClock(speed=SPEED)
    host = Host(str(tmp_path / "unused"), clock)
    nibp = host.nibp
    answer = Ack(t=0.0, code=AckCode.COMPLETED)
    task = asyncio.current_task()
    assert task is not None

    @contextlib.asynccontextmanager
    async def timeout_as_it_comes(_seconds: float) -> AsyncIterator[None]:
        # The answer arrives, then the time runs out, before the waiting task runs again.
        assert nibp._waiter is not None
        loop = asyncio.get_running_loop()
        loop.call_soon(nibp._waiter[1].set_result, answer)
        loop.call_soon(task.cancel)
        try:
            yield
        except asyncio.CancelledError:
            task.uncancel()
            raise TimeoutError from None

    host.link.send = lambda data: True  # type: ignore[method-assign]
    clock.timeout = timeout_as_it_comes  # type: ignore[method-assign,assignment]
    assert await nibp._exchange(CUFF, lambda _reply: True) == answer
