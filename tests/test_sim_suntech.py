"""The simulated SunTech Advantage NIBP module answers the host as devices.md §4.1 describes.

First the command/reply state machine by plain calls, then the same flow over a real
pseudo-terminal with pyserial, as the daemon's link would drive it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import replace
from typing import Any

import pytest
import serial

from sessiond.clock import LoopClock
from sessiond.devices.suntech import (
    Ack,
    AckCode,
    BpResult,
    CuffPressure,
    Reply,
    ReturnString,
    SuntechAdvantageDecoder,
    abort_command,
    command,
    cuff_pressure_command,
    read_result_command,
    start_measurement_command,
)
from sessiond.model import Reading
from sessiond.sim.devices import SuntechPlayer
from sessiond.sim.scenario import BpFailure, Scenario
from sessiond.sim.simulator import Simulator
from sessiond.sim.suntech import BpTruth, SuntechModule

PATIENT = BpTruth(sys=124, dia=79, pr=71)
START, CUFF, DATA, ABORT = (
    start_measurement_command(),
    cuff_pressure_command(),
    read_result_command(),
    abort_command(),
)


def codes(replies: list[Reply]) -> list[AckCode]:
    return [r.code for r in replies if isinstance(r, Ack)]


def replies(data: bytes) -> list[Reply]:
    decoder = SuntechAdvantageDecoder(device="nibp")
    decoder.feed(data, 0.0)
    assert decoder.frames_bad == decoder.bytes_skipped == 0
    return [replace(r, t=0.0) for r in decoder.take_replies()]


def result(data: bytes) -> BpResult:
    """The one BP data frame in `data`."""
    (reply,) = replies(data)
    assert isinstance(reply, BpResult)
    return reply


def pressure(data: bytes) -> int:
    """The one cuff pressure in `data`."""
    (reply,) = replies(data)
    assert isinstance(reply, CuffPressure)
    return reply.mmhg


def acks(data: bytes) -> list[AckCode]:
    return [r.code for r in replies(data) if isinstance(r, Ack)]


def module(*failures: BpFailure, scatter=None) -> SuntechModule:
    return SuntechModule(patient=lambda _t: PATIENT, failures=failures, scatter=scatter)


def measure(m: SuntechModule, t: float) -> tuple[float, list[int], bytes]:
    """Start at `t`, poll the cuff every 0.5 s until `K`; returns (K time, pressures, data)."""
    assert acks(m.receive(START, t)) == [AckCode.RECEIVED]
    pressures = []
    deadline = t + 100
    while True:
        t += 0.5
        out = m.receive(CUFF, t)
        got = replies(out)
        pressures += [r.mmhg for r in got if isinstance(r, CuffPressure)]
        if Ack(t=0.0, code=AckCode.COMPLETED) in got:
            return t, pressures, m.receive(DATA, t)
        assert t < deadline, "no K"


def test_a_measurement_inflates_deflates_says_k_and_reports_the_patient() -> None:
    """start → O; cuff up above SYS then down; K after 25-45 s; BP data = the patient's."""
    m = module()
    end, pressures, data = measure(m, 100.0)
    assert 25 <= end - 100.0 <= 45
    top = max(pressures)
    assert top >= PATIENT.sys + 20
    assert pressures.index(top) < len(pressures) // 3  # fast inflation, slow deflation
    assert pressures[-1] == 0
    (result,) = replies(data)
    assert result == BpResult(t=0.0, sys=124, dia=79, map=94, pr=71, error=0)
    # Asked again later, the same result; idle cuff at 0.
    assert replies(m.receive(DATA, end + 60)) == [result]
    assert replies(m.receive(CUFF, end + 60)) == [CuffPressure(t=0.0, mmhg=0)]


def test_k_comes_unasked_at_the_end_of_the_measurement() -> None:
    """The host need not poll: `K` is due at `next_due()` and sent by `advance`."""
    m = module()
    m.receive(START, 10.0)
    due = m.next_due()
    assert due is not None
    assert m.advance(due - 0.1) == b""
    assert acks(m.advance(due)) == [AckCode.COMPLETED]
    assert m.next_due() is None


def test_measurement_scatter_is_added_to_the_patient() -> None:
    m = module(scatter=lambda index: (3 * (index + 1), -2, 1))
    _, _, first = measure(m, 0.0)
    _, _, second = measure(m, 100.0)
    assert [(r.sys, r.dia, r.pr) for r in map(result, (first, second))] == [
        (127, 77, 72),
        (130, 77, 72),
    ]


def test_busy_abort_and_other_commands() -> None:
    """A start while measuring → B; abort → A and error 0x56; version "LX"; junk → D / N."""
    m = module()
    m.receive(START, 0.0)
    assert acks(m.receive(START, 1.0)) == [AckCode.BUSY]
    assert pressure(m.receive(CUFF, 3.0)) > 0
    assert acks(m.receive(ABORT, 4.0)) == [AckCode.ABORTED]
    assert m.next_due() is None
    assert result(m.receive(DATA, 5.0)).error == 0x56
    assert acks(m.receive(ABORT, 6.0)) == [AckCode.ABORTED]  # idle: still acknowledged
    assert replies(m.receive(command(b"\x79\x02\x40"), 7.0)) == [ReturnString(t=0.0, text="LX")]
    assert acks(m.receive(b":\x20\x00", 8.0)) == [AckCode.UNRECOGNIZABLE]  # bad checksum
    assert acks(m.receive(command(b"\x55"), 9.0)) == [AckCode.UNDEFINED]
    assert m.bad_commands == 1


def test_no_result_before_any_measurement_is_an_error_ack() -> None:
    assert acks(module().receive(DATA, 0.0)) == [AckCode.ERROR]


def test_commands_split_across_reads_and_glued_together() -> None:
    """Commands arrive in any chunking; each gets its reply, in order."""
    m = module()
    stream = START + CUFF + START
    out = b"".join(m.receive(stream[i : i + 1], 1.0) for i in range(len(stream)))
    assert [type(r).__name__ for r in replies(out)] == ["Ack", "CuffPressure", "Ack"]
    assert acks(out) == [AckCode.RECEIVED, AckCode.BUSY]


def test_scenario_failures_in_order_then_good_measurements_again() -> None:
    """error code → K and an error byte; none → silence; ack_only → O and never K."""
    m = module(
        BpFailure(kind="bp_failure", at_s=50, answer="error", error=0x57),
        BpFailure(kind="bp_failure", at_s=50, answer="none"),
        BpFailure(kind="bp_failure", at_s=50, answer="ack_only"),
    )
    # Before at_s: a good measurement.
    _, _, data = measure(m, 0.0)
    assert result(data).error == 0
    # 1: the error code.
    _, _, data = measure(m, 60.0)
    assert replies(data) == [BpResult(t=0.0, sys=None, dia=None, map=None, pr=None, error=0x57)]
    # 2: no answer at all, and nothing starts.
    assert m.receive(START, 120.0) == b""
    assert m.next_due() is None
    assert m.ignored == 1
    # 3: O and the cuff works, but the measurement never completes.
    assert acks(m.receive(START, 130.0)) == [AckCode.RECEIVED]
    due = m.next_due()
    assert due is not None
    assert m.advance(due + 1) == b""
    assert acks(m.receive(CUFF, due + 2)) == []
    # Then good again.
    _, _, data = measure(m, 300.0)
    assert result(data).error == 0


def test_reset_forgets_the_measurement() -> None:
    m = module()
    m.receive(START, 0.0)
    m.reset()
    assert m.next_due() is None
    assert acks(m.receive(DATA, 1.0)) == [AckCode.ERROR]


# --- on a real pty ------------------------------------------------------------------------

SPEED = 40.0  # a ~33 s measurement in under a second


class Host:
    """A pyserial host in a thread-free style: write, then read replies with a deadline."""

    def __init__(self, path: str) -> None:
        self.port = serial.Serial(path, 9600, timeout=0.02)
        self.decoder = SuntechAdvantageDecoder(device="nibp")
        self.readings: list[Reading] = []

    def ask(self, cmd: bytes, *, want: int = 1, within: float = 3.0) -> list[Reply]:
        """Send `cmd`, return the replies once `want` arrived (or what came by `within` s)."""
        self.port.write(cmd)
        return self.wait(want=want, within=within)

    def wait(self, *, want: int = 1, within: float = 3.0) -> list[Reply]:
        got: list[Reply] = []
        deadline = time.monotonic() + within
        while len(got) < want and time.monotonic() < deadline:
            self.readings += self.decoder.feed(self.port.read(256), 0.0)
            got += self.decoder.take_replies()
        return got


def flow(path: str, stop: threading.Event) -> dict[str, Any]:
    """The host side of the test (runs in a thread): the whole command/reply flow."""
    host = Host(path)
    out: dict[str, Any] = {}
    try:
        out["start"] = host.ask(START)
        out["busy"] = host.ask(START)
        pressures = []
        k_seen = False
        while not k_seen and not stop.is_set():
            for r in host.ask(CUFF):
                if isinstance(r, CuffPressure):
                    pressures.append(r.mmhg)
                k_seen |= r == Ack(t=r.t, code=AckCode.COMPLETED)
        out["pressures"] = pressures
        out["result"] = host.ask(DATA)
        # Second measurement: the scenario makes it fail with an error code.
        host.ask(START)
        out["failed"] = host.wait(want=1, within=5.0)  # the K
        out["failed_result"] = host.ask(DATA)
        # Third: no answer at all.
        out["silent"] = host.ask(START, within=0.5)
        # Fourth (good again): start, then abort.
        out["start4"] = host.ask(START)
        out["abort"] = host.ask(ABORT)
        out["aborted_result"] = host.ask(DATA)
        out["readings"] = host.readings
    finally:
        host.port.close()
    return out


async def test_command_reply_flow_on_a_pty_with_pyserial() -> None:
    """start → O → cuff pressures → K → BP data matching the model; busy; failures; abort."""
    # The first measurement starts at ~0 s and succeeds; the failures take the next two.
    scenario = Scenario(
        name="nibp",
        seed=3,
        duration_s=3600,
        events=(
            BpFailure(kind="bp_failure", at_s=10, answer="error", error=0x02),
            BpFailure(kind="bp_failure", at_s=10, answer="none"),
        ),
    )
    clock = LoopClock(speed=SPEED)
    with Simulator(scenario=scenario, clock=clock, devices={"nibp": "suntech-advantage"}) as sim:
        stop = threading.Event()
        player = sim.players["nibp"]
        assert isinstance(player, SuntechPlayer)
        run = asyncio.create_task(sim.run())
        try:
            async with asyncio.timeout(20):
                out = await asyncio.to_thread(flow, sim.ports["nibp"].path, stop)
        finally:
            stop.set()
            run.cancel()
            with pytest.raises(asyncio.CancelledError):
                await run
    assert codes(out["start"]) == [AckCode.RECEIVED]
    assert codes(out["busy"]) == [AckCode.BUSY]
    pressures = out["pressures"]
    assert max(pressures) >= 150
    assert min(pressures[-3:]) < 70  # deflated below DIA by the time of `K`
    (result,) = out["result"]
    assert isinstance(result, BpResult)
    assert result.error == 0
    assert result.sys is not None
    assert result.dia is not None
    assert result.pr is not None
    # The values are the model patient's during the measurement, plus a cuff's scatter.
    vitals = sim.vitals
    assert abs(result.sys - vitals.sys[:120].mean()) <= 12
    assert abs(result.dia - vitals.dia[:120].mean()) <= 8
    assert abs(result.pr - vitals.pr[:120].mean()) <= 8
    assert result.map == round(result.dia + (result.sys - result.dia) / 3)
    assert codes(out["failed"]) == [AckCode.COMPLETED]
    (failed,) = out["failed_result"]
    assert (failed.error, failed.sys) == (0x02, None)
    assert out["silent"] == []
    assert codes(out["start4"]) == [AckCode.RECEIVED]
    assert codes(out["abort"]) == [AckCode.ABORTED]
    assert out["aborted_result"][0].error == 0x56
    assert player.module.ignored == 1
