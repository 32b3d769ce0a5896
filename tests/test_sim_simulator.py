"""The simulator end to end: real lines on a real pty, on schedule, with the scenario's events."""

from __future__ import annotations

import asyncio
import re
import threading

import pytest
import serial

from sessiond.clock import LoopClock
from sessiond.sim.devices import MasimoPlayer
from sessiond.sim.scenario import Garbage, Scenario, builtin_scenario, builtin_scenarios
from sessiond.sim.simulator import Simulator, run_sim

SPEED = 400.0  # the 400 s test scenario in about a second
DASHES = b"SPO2=---% BPM=--- PI=--.--%"
LINE = re.compile(
    rb"^(\d\d/\d\d/\d\d \d\d:\d\d:\d\d) SN=\d{10} SPO2=(\d{3}|---)% .* EXC=[0-9A-F]{6}$"
)


def parse(line: bytes) -> re.Match[bytes]:
    """The fields of one Masimo line (without CR LF)."""
    match = LINE.match(line)
    assert match is not None, line
    return match


def read_bytes(reader: serial.Serial, count: int, stop: threading.Event) -> bytes:
    """Read until `count` bytes arrived or `stop` is set (runs in a thread)."""
    data = bytearray()
    while len(data) < count and not stop.is_set():
        data += reader.read(min(4096, count - len(data)))
    return bytes(data)


def read_until_error(
    reader: serial.Serial, stop: threading.Event, on_lines: threading.Event
) -> BaseException | None:
    """Read until the port fails; set `on_lines` once a few full lines came (runs in a thread)."""
    data = bytearray()
    while not stop.is_set():
        try:
            data += reader.read(256)
        except serial.SerialException as exc:
            return exc
        if data.count(b"\n") >= 3:
            on_lines.set()
    return None


async def test_lines_arrive_in_order_with_the_scenario_events() -> None:
    """A pyserial reader gets every line of desaturation.toml in order; dashes while probe off."""
    scenario = builtin_scenario("desaturation")
    with Simulator(scenario=scenario, clock=LoopClock(speed=SPEED)) as sim:
        masimo = sim.players["spo2"]
        assert isinstance(masimo, MasimoPlayer)
        expected = b"".join(masimo.line(k) for k in range(scenario.duration_s))
        stop = threading.Event()
        with serial.Serial(sim.ports["spo2"].path, 9600, timeout=0.05) as reader:
            try:
                async with asyncio.timeout(8), asyncio.TaskGroup() as tg:
                    tg.create_task(sim.run())
                    got = tg.create_task(asyncio.to_thread(read_bytes, reader, len(expected), stop))
            finally:
                stop.set()
        assert sim.ports["spo2"].overflow_bytes == 0

    assert got.result() == expected
    lines = expected.split(b"\r\n")[:-1]
    assert len(lines) == scenario.duration_s
    stamps = [parse(line).group(1) for line in lines]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == len(stamps)
    # Sensor off from 200 s for 30 s: no values and only the sensor-off bit.
    for k, line in enumerate(lines):
        probe_off = 200 <= k < 230
        assert (DASHES in line) == probe_off, k
        assert line.endswith(b"EXC=000020" if probe_off else b"EXC=000800"), k
    # The desaturation window shows on the wire.
    spo2 = [int(parse(line).group(2)) for line in lines[70:110]]
    assert max(spo2) < 90


async def test_unplug_raises_in_the_reader_and_the_simulator_carries_on() -> None:
    """Unplugging mid-session breaks the pyserial reader; the simulator keeps time regardless."""
    scenario = builtin_scenario("desaturation")
    chunks: list[float] = []
    with Simulator(
        scenario=scenario,
        clock=LoopClock(speed=SPEED),
        on_bytes=lambda t, _port, _direction, _data: chunks.append(t),
    ) as sim:
        port = sim.ports["spo2"]
        stop, got_lines = threading.Event(), threading.Event()
        with serial.Serial(port.path, 9600, timeout=0.05) as reader:
            try:
                async with asyncio.timeout(8), asyncio.TaskGroup() as tg:
                    running = tg.create_task(sim.run())
                    failed = tg.create_task(
                        asyncio.to_thread(read_until_error, reader, stop, got_lines)
                    )
                    await asyncio.to_thread(got_lines.wait)
                    sim.unplug("spo2")
                    error = await failed
                    assert isinstance(error, serial.SerialException)
                    await running
            finally:
                stop.set()
                got_lines.set()
        # Nothing reaches the host after the pull; the simulator still ran to the end.
        assert not port.plugged
        assert chunks
        assert chunks[-1] < scenario.duration_s - 1


async def test_on_bytes_gets_every_chunk_at_its_scheduled_time_never_early() -> None:
    """Each line is reported once at t = its session second, and written no earlier than that."""
    scenario = Scenario(name="short", seed=5, duration_s=50)
    clock = LoopClock(speed=SPEED)
    chunks: list[tuple[float, str, bytes, float]] = []

    def on_bytes(t: float, port: str, direction: str, data: bytes) -> None:
        assert direction == "<"
        chunks.append((t, port, data, clock.now()))

    with Simulator(scenario=scenario, clock=clock, on_bytes=on_bytes) as sim:
        async with asyncio.timeout(5):
            await sim.run()
        assert clock.now() >= scenario.duration_s
        assert [t for t, *_ in chunks] == [float(k) for k in range(50)]
        masimo = sim.players["spo2"]
        assert isinstance(masimo, MasimoPlayer)
        assert [data for _, _, data, _ in chunks] == [masimo.line(k) for k in range(50)]
    assert {port for _, port, _, _ in chunks} == {"spo2"}
    assert all(now >= t - 1e-3 for t, _, _, now in chunks)


class LateClock(LoopClock):
    """A clock already 30 s into the session when the simulator starts."""

    def now(self) -> float:
        return super().now() + 30.0


async def test_a_late_start_catches_up_on_the_missed_lines() -> None:
    """Lines whose time has passed are written at once, in order, then the schedule resumes."""
    scenario = Scenario(name="late", seed=5, duration_s=40)
    written: list[float] = []
    clock = LateClock(speed=SPEED)
    with Simulator(
        scenario=scenario, clock=clock, on_bytes=lambda t, _port, _dir, _data: written.append(t)
    ) as sim:
        async with asyncio.timeout(5):
            await sim.run()
    assert written == [float(k) for k in range(40)]


async def test_garbage_bursts_go_before_their_lines_deterministically() -> None:
    """A garbage burst goes just before the line due at its time, the same bytes for a seed."""
    scenario = Scenario(
        name="noisy",
        seed=9,
        duration_s=20,
        events=(
            Garbage(kind="garbage", at_s=3.5, bytes=17),
            Garbage(kind="garbage", at_s=10, duration_s=3, bytes=5),
        ),
    )

    async def run_once() -> list[tuple[float, bytes]]:
        chunks: list[tuple[float, bytes]] = []
        sim = Simulator(
            scenario=scenario,
            clock=LoopClock(speed=SPEED),
            on_bytes=lambda t, _port, _dir, data: chunks.append((t, data)),
        )
        with sim:
            async with asyncio.timeout(5):
                await sim.run()
        return chunks

    first = await run_once()
    junk = [(t, len(data)) for t, data in first if not LINE.match(data.rstrip(b"\r\n"))]
    assert junk == [(4.0, 17), (10.0, 5), (11.0, 5), (12.0, 5)]
    # Each burst comes right before the line of the same second.
    for i, (t, data) in enumerate(first):
        if len(data) in {5, 17} and not LINE.match(data.rstrip(b"\r\n")):
            assert first[i + 1][0] == t
            assert LINE.match(first[i + 1][1].rstrip(b"\r\n"))
    assert await run_once() == first


async def test_run_sim_prints_the_ports_and_returns_0_at_the_end(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`sessiond sim` prints `PORT PATH PROTOCOL` per device and ends with the scenario."""
    captured: list[bytes] = []
    scenario = Scenario(name="tiny", duration_s=5)
    async with asyncio.timeout(5):
        status = await run_sim(
            scenario=scenario,
            speed=SPEED,
            on_bytes=lambda _t, _p, _d, data: captured.append(data),
        )
    assert status == 0
    out = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert [(name, protocol) for name, _, protocol in out] == [
        ("spo2", "masimo-ascii1"),
        ("nibp", "suntech-advantage"),
    ]
    assert all(path.startswith("/dev/pts/") for _, path, _ in out)
    assert len(captured) == 5


async def test_run_sim_returns_0_when_cancelled() -> None:
    """Ctrl-C (the main task cancelled) ends `sessiond sim` cleanly with status 0."""
    first_bytes = asyncio.Event()
    task = asyncio.create_task(
        run_sim(
            scenario=Scenario(name="long", duration_s=10800),
            speed=1.0,
            on_bytes=lambda _t, _p, _d, _data: first_bytes.set(),
        )
    )
    async with asyncio.timeout(5):
        await first_bytes.wait()
        task.cancel()
        assert await task == 0


@pytest.mark.parametrize("name", builtin_scenarios())
async def test_builtin_scenarios_render(name: str) -> None:
    """Every line of the shipped scenarios is a fixed-width Masimo line."""
    sim = Simulator(scenario=builtin_scenario(name), clock=LoopClock())
    masimo = sim.players["spo2"]
    assert isinstance(masimo, MasimoPlayer)
    lines = masimo.render(0, sim.scenario.duration_s)
    assert {len(line) for line in lines} == {127}
    assert all(LINE.match(line.rstrip(b"\r\n")) for line in lines)
