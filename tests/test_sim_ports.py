"""The simulator's devices on real pseudo-terminals: protocols per port, cables, captures, CLI."""

from __future__ import annotations

import asyncio
import bisect
import io
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import serial

from sessiond.clock import LoopClock
from sessiond.devices import make_decoder
from sessiond.devices.contec import ContecV7Decoder
from sessiond.devices.masimo import MasimoAscii1Decoder
from sessiond.devices.nonin import NoninDf7Decoder
from sessiond.devices.suntech import start_measurement_command
from sessiond.model import Reading
from sessiond.records.capture import CaptureReader
from sessiond.sim.scenario import CablePull, Scenario
from sessiond.sim.simulator import Simulator, run_sim

Record = tuple[float, str, str, bytes]


class Printed(io.StringIO):
    """run_sim's output; `flushed` is set once the device lines are out."""

    def __init__(self) -> None:
        super().__init__()
        self.flushed = asyncio.Event()

    def flush(self) -> None:
        super().flush()
        self.flushed.set()


def exists(path: Path) -> bool:
    return path.exists()


def is_symlink(path: str) -> bool:
    return Path(path).is_symlink()


def resolve(path: Path) -> str:
    return str(path.resolve())


def read_for(reader: serial.Serial, seconds: float) -> bytes:
    """Everything the reader gets in `seconds` of real time (runs in a thread)."""
    data = bytearray()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        data += reader.read(4096)
    return bytes(data)


def read_until(
    reader: serial.Serial, predicate: Callable[[bytes], bool], within: float = 5.0
) -> bytes:
    """Read until `predicate(data)` holds (or `within` s pass); runs in a thread."""
    data = bytearray()
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and not predicate(bytes(data)):
        data += reader.read(4096)
    return bytes(data)


async def test_cable_pull_path_vanishes_and_comes_back_at_the_same_path() -> None:
    """A reader of the stable path gets an error at the pull and data again after the replug."""
    scenario = Scenario(
        name="pull",
        seed=2,
        duration_s=40,
        events=(CablePull(kind="cable_pull", at_s=10, duration_s=10, port="spo2"),),
    )
    records: list[Record] = []
    clock = LoopClock(speed=20)
    sim = Simulator(
        scenario=scenario,
        clock=clock,
        devices={"spo2": "masimo-ascii1"},
        on_bytes=lambda *r: records.append(r),
    )
    with sim:
        path = sim.ports["spo2"].path
        link_dir = Path(path).parent
        assert is_symlink(path)
        assert Path(path).name == "spo2"

        def host() -> tuple[bytes, BaseException | None, bool, bytes]:
            before = bytearray()
            error: BaseException | None = None
            with serial.Serial(path, 9600, timeout=0.05) as reader:
                try:
                    while True:
                        before += reader.read(4096)
                except serial.SerialException as exc:
                    error = exc
            vanished = not Path(path).exists()
            deadline = time.monotonic() + 5
            while not Path(path).exists() and time.monotonic() < deadline:
                time.sleep(0.01)  # the host's reconnect loop, as a link's backoff
            with serial.Serial(path, 9600, timeout=0.05) as reader:
                after = read_until(reader, lambda d: d.count(b"\r\n") >= 2)
            return bytes(before), error, vanished, after

        async with asyncio.timeout(10):
            run = asyncio.create_task(sim.run())
            before, error, vanished, after = await asyncio.to_thread(host)
            await run
        assert isinstance(error, serial.SerialException)
        assert vanished
        assert b"\r\n" in before
        readings = MasimoAscii1Decoder(device="spo2").feed(after, 0.0)
        assert readings
        assert readings[0].spo2 is not None
        assert sim.ports["spo2"].replugs == 1
        assert sim.ports["spo2"].path == path
    assert not exists(link_dir)  # the simulator's own temporary directory is gone
    sent = [t for t, port, direction, _ in records if port == "spo2" and direction == "<"]
    assert not [t for t in sent if 10 <= t < 20]
    assert [t for t in sent if t < 10] == [float(k) for k in range(10)]
    assert [t for t in sent if t >= 20] == [float(k) for k in range(20, 40)]


async def test_link_dir_gives_every_port_a_stable_name(tmp_path: Path) -> None:
    """With `link_dir`, every port is `link_dir/<port>`, left in place for the caller's dir."""
    scenario = Scenario(name="names", duration_s=5)
    with Simulator(scenario=scenario, clock=LoopClock(), link_dir=tmp_path) as sim:
        assert {name: port.path for name, port in sim.ports.items()} == {
            "spo2": str(tmp_path / "spo2"),
            "nibp": str(tmp_path / "nibp"),
        }
        assert resolve(tmp_path / "nibp") == sim.ports["nibp"].tty_path
    assert exists(tmp_path)
    assert not exists(tmp_path / "spo2")


async def test_contec_streams_only_while_the_host_keeps_it_alive() -> None:
    """Silent until `A1`; 60 packets/s of session time after it; silent ~30 s after the last."""
    speed = 50.0
    scenario = Scenario(name="contec", seed=4, duration_s=600)
    with Simulator(
        scenario=scenario, clock=LoopClock(speed=speed), devices={"spo2": "contec-v7"}
    ) as sim:

        def host() -> tuple[bytes, bytes, bytes]:
            with serial.Serial(sim.ports["spo2"].path, 115200, timeout=0.02) as reader:
                quiet = read_for(reader, 0.2)  # 10 s of session time
                reader.write(ContecV7Decoder.start_command())
                streaming = read_for(reader, 0.2)
                # No keep-alive: the stream ends 30 s (0.6 s real) after the start.
                read_for(reader, 0.8)
                stopped = read_for(reader, 0.2)
            return quiet, streaming, stopped

        async with asyncio.timeout(10):
            run = asyncio.create_task(sim.run())
            quiet, streaming, stopped = await asyncio.to_thread(host)
            run.cancel()
            with pytest.raises(asyncio.CancelledError):
                await run
    assert quiet == b""
    assert stopped == b""
    decoder = ContecV7Decoder(device="spo2")
    readings = decoder.feed(streaming, 0.0)
    assert decoder.frames_bad == 0
    # ~10 s of session time at 60 packets/s (real-time jitter allowed).
    assert 300 <= decoder.records <= 900
    assert all(r.spo2 is not None and 90 <= r.spo2 <= 100 for r in readings)


async def test_nonin_df7_on_a_pty_decodes_without_a_bad_frame() -> None:
    """75 Hz DF7 written a packet at a time decodes cleanly through a real pty."""
    scenario = Scenario(name="nonin", seed=6, duration_s=30)
    with Simulator(
        scenario=scenario, clock=LoopClock(speed=30), devices={"spo2": "nonin-df7"}
    ) as sim:
        with serial.Serial(sim.ports["spo2"].path, 9600, timeout=0.05) as reader:
            async with asyncio.timeout(10):
                run = asyncio.create_task(sim.run())
                data = await asyncio.to_thread(
                    read_until, reader, lambda d: len(d) >= 30 * 3 * 125, 8.0
                )
                await run
        assert sim.ports["spo2"].overflow_bytes == 0
    decoder = NoninDf7Decoder(device="spo2")
    readings: list[Reading] = []
    for k in range(0, len(data), 125):  # packet k/125 at its time, 3 a second
        readings += decoder.feed(data[k : k + 125], k / 125 / 3)
    assert decoder.records == 90
    assert decoder.frames_bad == decoder.bytes_skipped == 0
    # A Reading at each change and at least once a second: each second's first packet says
    # that second's values, which are the last Reading's at or before it.
    times = [r.t for r in readings]
    per_second = [readings[bisect.bisect_right(times, s) - 1].spo2 for s in range(30)]
    assert per_second == sim.track.spo2.tolist()


def capture_readings(
    path: Path,
) -> tuple[CaptureReader, list[Reading], list[str], dict[str, int]]:
    """The capture's ports, its decoded readings, its `>` lines as `port hex`, and the
    records each port's decoder counted."""
    with path.open(encoding="utf-8") as stream:
        reader = CaptureReader(stream)
        decoders = {name: make_decoder(p, device=name) for name, p in reader.ports.items()}
        readings: list[Reading] = []
        sent: list[str] = []
        for record in reader:
            if record.direction == "<":
                readings += decoders[record.port].feed(record.data, record.t)
            else:
                sent.append(f"{record.port} {record.data.hex()}")
    return reader, readings, sent, {name: d.records for name, d in decoders.items()}


async def test_run_sim_capture_has_both_ports_and_the_host_commands(tmp_path: Path) -> None:
    """A host's command shows as a `>` line, the module's answer as `<`, oximeter lines too."""
    capture = tmp_path / "sim.cap"
    out = Printed()

    def host(path: str) -> bytes:
        with serial.Serial(path, 9600, timeout=0.05) as port:
            port.write(start_measurement_command())
            return read_until(port, lambda d: len(d) >= 4)

    async with asyncio.timeout(10):
        task = asyncio.create_task(
            run_sim(
                scenario=Scenario(name="cap", duration_s=60), speed=30, capture=capture, out=out
            )
        )
        await out.flushed.wait()
        ports = dict(line.split(maxsplit=1) for line in out.getvalue().splitlines())
        answer = await asyncio.to_thread(host, ports["nibp"].split()[0])
        assert await task == 0
    assert answer == bytes.fromhex("3e044f6f")  # `O`
    reader, readings, sent, _ = capture_readings(capture)
    assert reader.ports == {"spo2": "masimo-ascii1", "nibp": "suntech-advantage"}
    assert sent == ["nibp 3a20a6"]
    assert len([r for r in readings if r.device == "spo2"]) == 60
    text = capture.read_text()
    assert " nibp > 3a20a6\n" in text
    assert " nibp < 3e044f6f\n" in text


async def test_bench_host_puts_bp_readings_in_a_capture_without_a_daemon(tmp_path: Path) -> None:
    """`nibp_every_s`: the simulator drives the module itself; the capture has its BP data."""
    capture = tmp_path / "bench.cap"
    scenario = Scenario(name="bench", seed=9, duration_s=400)
    async with asyncio.timeout(10):
        status = await run_sim(
            scenario=scenario,
            speed=400,
            capture=capture,
            nibp_every_s=150,
            devices={"spo2": "nonin-df7", "nibp": "suntech-advantage"},
            out=io.StringIO(),
        )
    assert status == 0
    _, readings, sent, records = capture_readings(capture)
    bp = [r for r in readings if r.device == "nibp"]
    assert len(bp) == 3  # at 0, 150 and 300 s
    assert all(r.sys is not None and 100 <= r.sys <= 145 for r in bp)
    assert sent.count("nibp 3a20a6") == 3
    assert sent.count("nibp 3a7903004a") == 3
    assert "nibp 3a79050048" in sent
    assert records["spo2"] == 400 * 3  # every packet; Readings on change (DESIGN §6)
    assert 400 <= len([r for r in readings if r.device == "spo2"]) < 400 * 3


def sessiond(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sessiond", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=30,
        check=False,
    )


def test_cli_sim_plays_a_scenario_to_its_end_and_writes_a_replayable_capture(
    tmp_path: Path,
) -> None:
    """`sessiond sim --scenario ... --devices ... --capture ...` as a process; exit 0 at the end."""
    scenario = tmp_path / "short.toml"
    scenario.write_text('name = "short"\nduration_s = 120\nseed = 3\n', encoding="utf-8")
    capture = tmp_path / "out.cap"
    done = sessiond(
        "sim", "--scenario", str(scenario), "--speed", "400", "--capture", str(capture),
        "--devices", "spo2=nonin-df7,cuff=suntech-advantage", "--nibp-every", "60",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [line.split() for line in done.stdout.splitlines()]
    assert [(name, protocol) for name, _, protocol in lines] == [
        ("spo2", "nonin-df7"),
        ("cuff", "suntech-advantage"),
    ]
    assert capture.read_text().splitlines()[:3] == [
        "# sessiond-capture 1",
        "# port spo2 nonin-df7",
        "# port cuff suntech-advantage",
    ]
    replayed = sessiond("replay", str(capture), "--readings", cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stderr
    events = [json.loads(line) for line in replayed.stdout.splitlines()]
    bp = [e for e in events if e["type"] == "reading" and e["device"] == "cuff"]
    assert len(bp) == 2  # at 0 and 60 s
    assert all(100 <= e["sys"] <= 145 for e in bp)
    assert events[-1]["type"] == "summary"
    assert events[-1]["frames_bad"] == 0


def test_cli_sim_refuses_bad_devices_and_scenarios(tmp_path: Path) -> None:
    """Bad options: exit 2 with one line per problem, naming the option or the file key."""
    done = sessiond("sim", "--devices", "spo2=nellcor,x", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        (
            "--devices: spo2: unknown protocol 'nellcor' (the simulator plays: masimo-ascii1, "
            "nonin-df7, contec-v7, suntech-advantage)"
        ),
        "--devices: 'x': expected PORT=PROTOCOL, PORT like 'spo2'",
    ]
    done = sessiond(
        "sim", "--scenario", "cable_pull", "--devices", "spo2=masimo-ascii1", cwd=tmp_path
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "cable_pull: events.2.port: no such device 'nibp' (devices: spo2)"
    )
