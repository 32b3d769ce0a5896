"""The SunTech command layer against the simulated module, over a real pseudo-terminal."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Literal

from sessiond.clock import LoopClock
from sessiond.config import NibpConfig
from sessiond.devices.link import SerialLink
from sessiond.devices.nibp import NibpLink
from sessiond.devices.suntech import SuntechAdvantageDecoder
from sessiond.model import DeviceStatus, NibpFailed, Reading
from sessiond.sim.scenario import BpFailure, Scenario
from sessiond.sim.simulator import Simulator

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

#: Session seconds per real second: a 25-45 s measurement takes about a second.
SPEED = 40.0


class Host:
    """A daemon's view of one BP module: readings, link states, failures, bytes sent."""

    def __init__(self, path: str, clock: LoopClock) -> None:
        self.readings: asyncio.Queue[Reading] = asyncio.Queue()
        self.statuses: asyncio.Queue[DeviceStatus] = asyncio.Queue()
        self.failures: asyncio.Queue[NibpFailed] = asyncio.Queue()
        self.sent: list[bytes] = []
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
            link=self.link, clock=clock, config=NibpConfig(), on_failed=self.failures.put_nowait
        )
        self.link.on_open = self.nibp.on_open
        self.link.on_fed = self.nibp.on_fed

    def _readings(self, readings: list[Reading]) -> None:
        for reading in readings:
            self.readings.put_nowait(reading)

    def _bytes(self, _t: float, _port: str, direction: str, data: bytes) -> None:
        if direction == ">":
            self.sent.append(data)

    async def status(self) -> DeviceStatus:
        return await asyncio.wait_for(self.statuses.get(), 10)


@contextlib.asynccontextmanager
async def module(
    answer: Literal["error", "none", "ack_only"] | None = None,
    count: int = 1,
    link_dir: Path | None = None,
) -> AsyncIterator[tuple[Host, Simulator]]:
    events = () if answer is None else (BpFailure(kind="bp_failure", at_s=0, answer=answer,
                                                  count=count),)  # fmt: skip
    scenario = Scenario(name="nibp", seed=3, duration_s=3600, events=events)
    clock = LoopClock(speed=SPEED)
    with Simulator(scenario=scenario, clock=clock, devices={"nibp": "suntech-advantage"},
                   link_dir=link_dir) as sim:  # fmt: skip
        playing = asyncio.create_task(sim.run())
        host = Host(sim.ports["nibp"].path, clock)
        running = asyncio.create_task(host.link.run())
        try:
            yield host, sim
        finally:
            await host.nibp.close()
            for task in (running, playing):
                task.cancel()
            await asyncio.gather(running, playing, return_exceptions=True)


async def test_a_measurement_on_request_gives_a_reading():
    async with module() as (host, _sim):
        # The module is silent until spoken to: the probe at open is what says it is there.
        status = await host.status()
        assert (status.connected, status.detail) == (True, "answering")
        assert host.nibp.measure("test")
        assert not host.nibp.measure("again")  # one at a time
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
        async with asyncio.timeout(10):
            while host.sent.count(bytes.fromhex("3a79050048")) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
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
        async with asyncio.timeout(10):
            while host.sent.count(bytes.fromhex("3a79050048")) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
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


async def _idle(host: Host) -> None:
    while host.nibp.measuring:  # noqa: ASYNC110 - a flag the measurement task clears
        await asyncio.sleep(0.01)
