"""The live daemon's footprint: CPU and memory over a session, and where the memory goes.

    python bench/footprint.py [--real-minutes 3] [--speed 60] [--hours 3] [--audio]
                              [--tracemalloc] [--skip-real] [--skip-scaled]
                              [--sqlite-cache-kib N]

Each run starts a real Mosquitto on a free loopback port, the simulator in its own process
(`sessiond sim`: a Nonin DF7 oximeter at 75 frames/s and a SunTech NIBP module on
pseudo-terminals, the demo's IV scenario for as long as needed), the daemon in its own
process as the clinic runs it (`sessiond run --config FILE`, through `bench/live_daemon.py`)
and one signed-in console on `/ws` that reloads entries and trends every 30 min of session
time (read from the record). The bench starts a session over MQTT and marks the dose at
10 min. Music and the room's alarm speaker are off (no libvlc) unless `--audio`.

1. Real rate, `--real-minutes`: the daemon's CPU (utime + stime from /proc over wall time,
   after a 30 s warm-up) and its memory (VmRSS, PSS and anonymous from smaps_rollup).
2. Scaled, `--speed` (simulator and daemon both), `--hours` of session: RSS after 10 min of
   session time against RSS at the end (flat: within a few MB).
3. Where the memory goes: RSS by mapping at the end of run 1, what each import costs in a
   fresh interpreter, the modules and threads of the running daemon; with `--tracemalloc`,
   run 2 traces the daemon's Python allocations and prints what grew from 10 min to the end
   (its RSS then includes tracemalloc's own, and at 60x it may lag).

Prints figures beside their targets and the machine. Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiomqtt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from livekit import (  # type: ignore[import-not-found]  # beside this file
    ROOT,
    Console,
    Daemon,
    Memory,
    cpu_seconds,
    daemon_config,
    machine,
    mapped_by_file,
    memory,
    start_daemon,
)

from tests.mosquitto import HOST, Mosquitto

if TYPE_CHECKING:
    from collections.abc import Callable

ROOM = "bench"
DEVICES = "spo2=nonin-df7,nibp=suntech-advantage"
#: The demo scenario's patient and events, played for as long as the bench needs.
SCENARIO = """
name = "footprint"
description = "The demo session: dose at 10 min, a desaturation, a probe off."
seed = 20260105
duration_s = {duration_s}
route = "iv"
dose_at_s = 600
[patient]
spo2 = 97.5
pr = 72
pi = 3.0
resp_rate_per_min = 14
sys = 122
dia = 78
ketamine_response = 1.0
[[events]]
kind = "desaturation"
at_s = 680
duration_s = 80
spo2 = 86
ramp_s = 10
[[events]]
kind = "sensor_off"
at_s = 1200
duration_s = 20
"""
AUDIO_OFF = "[music]\nenabled = false\n[alarm_audio]\nenabled = false\n"
_HEADLESS = '["--no-video", "--quiet", "--aout=alsa", "--alsa-audio-device=null"]'
AUDIO_ON = f"[music]\nvlc_args = {_HEADLESS}\n[alarm_audio]\nvlc_args = {_HEADLESS}\n"
WARM_UP_S = 30.0
#: Session seconds between two page reloads (entries and trends read from the record).
RELOAD_S = 1800.0
TARGET_CPU_PCT = 1.0
TARGET_RSS_MB = 60.0
#: What "flat" allows between 10 min and the end of the session.
FLAT_MB = 3.0


@dataclass
class Sample:
    real_s: float
    session_s: float
    cpu_s: float
    mem: Memory


@dataclass
class Run:
    samples: list[Sample] = field(default_factory=list)
    sim_cpu_s: float = 0.0
    broker_cpu_s: float = 0.0
    real_s: float = 0.0
    ws_messages: int = 0
    mapped: dict[str, int] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None
    #: With tracemalloc: the Python allocations that grew from 10 min to the end.
    growth: list[str] = field(default_factory=list)
    growth_kb: float = 0.0


async def start_sim(
    workdir: Path, speed: float, duration_s: float
) -> tuple[asyncio.subprocess.Process, dict[str, str]]:
    """`sessiond sim` in its own process; returns it and each device's pty path."""
    scenario = workdir / "footprint.toml"
    scenario.write_text(SCENARIO.format(duration_s=round(duration_s)), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sessiond", "sim", "--scenario", str(scenario),
        "--devices", DEVICES, "--speed", str(speed),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=env,
        start_new_session=True,
    )  # fmt: skip
    assert process.stdout is not None
    paths: dict[str, str] = {}
    async with asyncio.timeout(30):
        while len(paths) < len(DEVICES.split(",")):
            name, path, _protocol = (await process.stdout.readline()).decode().split()
            paths[name] = path
    return process, paths


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(10):
            await process.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


async def report(daemon: Daemon, path: Path) -> dict[str, Any]:
    """Ask the running daemon what it holds (SIGUSR1 → `bench/live_daemon.py --report`)."""
    path.unlink(missing_ok=True)  # noqa: ASYNC240 - a bench: a local file, no other task waits
    os.kill(daemon.pid, signal.SIGUSR1)
    async with asyncio.timeout(60):
        # The daemon writes the file; nothing to wait on in this process but its appearance.
        while not path.exists():  # noqa: ASYNC110, ASYNC240
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # written in one go; let it finish
    data: dict[str, Any] = json.loads(path.read_text())  # noqa: ASYNC240
    return data


@dataclass
class Plan:
    """How long a session runs, how often it is sampled, and how the daemon runs."""

    speed: float
    session_s: float | None = None
    real_s: float | None = None
    sample_every_s: float = 5.0
    audio: bool = False
    traced: bool = False
    sqlite_cache_kib: int | None = None
    on_sample: Callable[[Sample], None] | None = None

    def daemon_args(self, report_path: Path) -> list[str]:
        args = ["--speed", str(self.speed), "--report", str(report_path)]
        args += ["--tracemalloc"] * self.traced
        if self.sqlite_cache_kib is not None:
            args += ["--sqlite-cache-kib", str(self.sqlite_cache_kib)]
        return args

    def done(self, sample: Sample) -> bool:
        return (self.session_s is not None and sample.session_s >= self.session_s) or (
            self.real_s is not None and sample.real_s >= self.real_s
        )


@dataclass
class Nurse:
    """What the bench does as the nurse: start, dose at 10 min, reload the page now and then."""

    client: aiomqtt.Client
    console: Console
    dosed: bool = False
    reload_at: float = 60.0

    async def start(self) -> None:
        start = json.dumps({"user": "bench", "route": "iv"})
        await self.client.publish(f"sessiond/{ROOM}/cmd/session/start", start, qos=1)

    async def act(self, session_t: float) -> None:
        if not self.dosed and session_t >= 600:
            dose = json.dumps({"user": "bench", "reason": "footprint bench"})
            await self.client.publish(f"sessiond/{ROOM}/cmd/dose", dose, qos=1)
            self.dosed = True
        if session_t >= self.reload_at:
            # The page opened again: entries and trends read back from the record.
            await self.console.get("/api/session/entries")
            await self.console.get("/api/session/trend?points=600")
            self.reload_at += RELOAD_S


async def session(plan: Plan) -> Run:
    """One session on the simulator, sampled until `plan` says it is done."""
    run = Run()
    with tempfile.TemporaryDirectory() as tmp, Mosquitto(Path(tmp)) as broker:
        workdir = Path(tmp)
        # Longer than the session: the daemon starts after the simulator, and lags at speed.
        longest = plan.session_s or (plan.real_s or 0.0) * plan.speed
        sim, paths = await start_sim(workdir, plan.speed, longest * 1.2 + 1200)
        config = daemon_config(
            workdir / "bench.toml",
            workdir=workdir,
            broker_port=broker.port,
            devices={
                name: (path, "nonin-df7" if name == "spo2" else "suntech-advantage")
                for name, path in paths.items()
            },
            extra=AUDIO_ON if plan.audio else AUDIO_OFF,
        )
        report_path = workdir / "report.json"
        daemon = await start_daemon(config, workdir=workdir, args=plan.daemon_args(report_path))
        clock = {"t": 0.0}

        def on_message(_t: float, message: dict[str, Any]) -> None:
            if message.get("type") == "tick":  # the daemon's session clock, every second
                clock["t"] = float(message["t"])

        try:
            async with (
                Console(daemon.console_url, on_message) as console,
                aiomqtt.Client(HOST, broker.port, identifier="bench-nurse") as client,
            ):
                nurse = Nurse(client, console)
                await nurse.start()
                early = await sample(
                    run, plan=plan, daemon=daemon, sim=sim, nurse=nurse, clock=clock,
                    report_path=report_path,
                )  # fmt: skip
                run.ws_messages = console.messages
                assert broker.pid is not None
                if sim.returncode is None:
                    run.sim_cpu_s = cpu_seconds(sim.pid)
                run.broker_cpu_s = cpu_seconds(broker.pid)
                run.mapped = mapped_by_file(daemon.pid)
                run.report = await report(daemon, report_path)
                if early is not None and "snapshot" in run.report:
                    compare(run, early["snapshot"], run.report["snapshot"])
        finally:
            run.exit_code = await daemon.stop()
            await stop(sim)
    return run


async def sample(
    run: Run,
    *,
    plan: Plan,
    daemon: Daemon,
    sim: asyncio.subprocess.Process,
    nurse: Nurse,
    clock: dict[str, float],
    report_path: Path,
) -> dict[str, Any] | None:
    """Sample the daemon until the plan is done; the 10-minute report when traced."""
    early: dict[str, Any] | None = None
    started = time.monotonic()
    while True:
        await asyncio.sleep(plan.sample_every_s)
        await nurse.act(clock["t"])
        if plan.traced and early is None and clock["t"] >= 600:
            early = await report(daemon, report_path)
        now = time.monotonic() - started
        taken = Sample(now, clock["t"], cpu_seconds(daemon.pid), memory(daemon.pid))
        run.samples.append(taken)
        if plan.on_sample is not None:
            plan.on_sample(taken)
        if plan.done(taken):
            break
        if sim.returncode is not None:
            print("  the simulator ended early", file=sys.stderr)
            break
    run.real_s = time.monotonic() - started
    return early


def compare(run: Run, first: str, last: str) -> None:
    """What the daemon's Python allocations gained between two snapshots."""
    # What the bench's own probe allocates (the report, the snapshots) is not the daemon's.
    ours = [
        tracemalloc.Filter(inclusive=False, filename_pattern=pattern, all_frames=True)
        for pattern in ("*/bench/live_daemon.py", tracemalloc.__file__)
    ]
    before = tracemalloc.Snapshot.load(first).filter_traces(ours)
    after = tracemalloc.Snapshot.load(last).filter_traces(ours)
    stats = after.compare_to(before, "traceback")
    run.growth_kb = sum(s.size_diff for s in stats) / 1024
    for stat in stats[:8]:
        where = " <- ".join(str(frame) for frame in stat.traceback[:3])
        run.growth.append(f"{stat.size_diff / 1024:+.0f} kB ({stat.count_diff:+d}): {where}")


NUMPY_STEP = "numpy (if a decoder loads it)"


def import_costs() -> list[tuple[str, float]]:
    """RSS (MB) added by each import, in the order the daemon needs them, in a fresh process."""
    steps = [
        ("python itself", ""),
        (
            "stdlib: asyncio, sqlite3, ssl, json, logging",
            "import asyncio, sqlite3, ssl, json, logging",
        ),
        ("serial, serial_asyncio_fast", "import serial, serial_asyncio_fast"),
        ("pydantic", "import pydantic"),
        ("aiohttp (client and web)", "import aiohttp, aiohttp.web"),
        ("aiomqtt, paho", "import aiomqtt"),
        ("sessiond.config (every part's settings)", "import sessiond.config"),
        ("sessiond.app (the rest of the daemon)", "import sessiond.app"),
        # Not the daemon's own: a decoder's bulk path, or a decoder that still imports it
        # when it loads (the modules of the running daemon below say whether it did).
        (NUMPY_STEP, "import numpy"),
    ]
    code = "\n".join(
        [
            "import re, sys",
            "def rss():",
            "    s = open('/proc/self/status').read()",
            "    return int(re.search(r'VmRSS:\\s+(\\d+)', s).group(1))",
        ]
        + [f"{stmt}\nprint(rss(), flush=True)" for _, stmt in steps]
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(  # noqa: S603 - this interpreter, on code written here
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    values = [int(v) / 1024 for v in out]
    return [(name, values[i] - (values[i - 1] if i else 0.0)) for i, (name, _) in enumerate(steps)]


def top_mappings(mapped: dict[str, int], n: int = 14) -> list[tuple[str, float]]:
    """The largest mappings, shared libraries grouped by package."""
    grouped: dict[str, int] = {}
    for name, kb in mapped.items():
        key = name
        if "site-packages/" in name:
            key = name.split("site-packages/", 1)[1].split("/", 1)[0] + " (native)"
        elif name.startswith("/") and ".so" in name:
            key = Path(name).name
        grouped[key] = grouped.get(key, 0) + kb
    return sorted(((k, v / 1024) for k, v in grouped.items()), key=lambda kv: -kv[1])[:n]


def module_groups(modules: list[str]) -> dict[str, int]:
    groups: dict[str, int] = {}
    for name in modules:
        top = name.split(".")[0]
        groups[top] = groups.get(top, 0) + 1
    return groups


def print_real(run: Run, minutes: float, *, audio: bool) -> None:
    warm = next((s for s in run.samples if s.real_s >= WARM_UP_S), run.samples[0])
    last = run.samples[-1]
    span = last.real_s - warm.real_s
    cpu_pct = 100 * (last.cpu_s - warm.cpu_s) / span if span > 0 else float("nan")
    rss = last.mem.rss_kb / 1024
    print(f"1. real rate, {minutes:g} min, music and alarm speaker {'on' if audio else 'off'}:")
    print("| figure | measured | target |")
    print("|---|---|---|")
    print(f"| daemon CPU (after {WARM_UP_S:.0f} s) | {cpu_pct:.2f} % of one core | "
          f"<= {TARGET_CPU_PCT:g} % |")  # fmt: skip
    print(f"| daemon RSS at the end | {rss:.1f} MB | <= {TARGET_RSS_MB:g} MB |")
    print(f"| daemon PSS / anonymous | {last.mem.pss_kb / 1024:.1f} / "
          f"{last.mem.anon_kb / 1024:.1f} MB | |")  # fmt: skip
    print(f"| daemon peak RSS (VmHWM) | {last.mem.hwm_kb / 1024:.1f} MB | |")
    print(f"| daemon threads | {last.mem.threads} | |")
    print(f"| simulator CPU, broker CPU (whole run) | {100 * run.sim_cpu_s / run.real_s:.1f} %, "
          f"{100 * run.broker_cpu_s / run.real_s:.2f} % | (not the daemon's) |")  # fmt: skip
    print(f"| console messages | {run.ws_messages / run.real_s:.0f} /s | |")
    print(f"  daemon exit {run.exit_code}")


def print_scaled(run: Run, speed: float, hours: float) -> None:
    ten = next((s for s in run.samples if s.session_s >= 600), run.samples[0])
    last = run.samples[-1]
    diff = (last.mem.rss_kb - ten.mem.rss_kb) / 1024
    print(f"2. scaled time, {speed:g}x, {last.session_s / 3600:.2f} h of session in "
          f"{run.real_s:.0f} s:")  # fmt: skip
    print("| session time | RSS MB | PSS MB | anonymous MB |")
    print("|---|---|---|---|")
    marks = [600.0, 1800.0] + [3600.0 * h for h in range(1, int(hours) + 1)]
    shown: set[int] = set()
    for mark in marks:
        sample = next((s for s in run.samples if s.session_s >= mark), None)
        if sample is None or id(sample) in shown:
            continue
        shown.add(id(sample))
        print(f"| {sample.session_s / 60:.0f} min | {sample.mem.rss_kb / 1024:.1f} | "
              f"{sample.mem.pss_kb / 1024:.1f} | {sample.mem.anon_kb / 1024:.1f} |")  # fmt: skip
    verdict = "flat" if abs(diff) <= FLAT_MB else "NOT flat"
    print(f"  RSS end minus 10 min: {diff:+.1f} MB (target: within a few MB; {verdict}); "
          f"peak {last.mem.hwm_kb / 1024:.1f} MB; daemon exit {run.exit_code}")  # fmt: skip
    if run.growth:
        print(f"  Python allocations (tracemalloc), 10 min to the end: {run.growth_kb:+.0f} kB; "
              "largest changes:")  # fmt: skip
        for line in run.growth:
            print(f"    {line}")
    queues = run.report.get("bus_queues", [])
    print("  bus queues at the end: " + ", ".join(
        f"{q['name']} {q['queued']} queued/{q['dropped']} dropped" for q in queues
    ))  # fmt: skip


def print_breakdown(run: Run) -> None:
    print("3. where the memory goes")
    print("| import (fresh interpreter) | RSS added MB |")
    print("|---|---|")
    total = 0.0
    for name, mb in import_costs():
        if name == NUMPY_STEP:
            print(f"| total after importing the daemon | {total:.1f} |")
        total += mb
        print(f"| {name} | {mb:.1f} |")
    print("| mapping in the running daemon (end of run 1) | RSS MB |")
    print("|---|---|")
    for name, mb in top_mappings(run.mapped):
        print(f"| {name} | {mb:.1f} |")
    modules = run.report.get("modules", [])
    groups = module_groups(modules)
    third = {
        k: v for k, v in groups.items() if k not in sys.stdlib_module_names and k != "sessiond"
    }
    print(
        f"  modules loaded in the daemon: {len(modules)}; third-party: "
        + ", ".join(f"{k} {v}" for k, v in sorted(third.items(), key=lambda kv: -kv[1]))
    )
    print(f"  threads: {', '.join(run.report.get('threads', []))}")


async def main(args: argparse.Namespace) -> None:
    real = None
    if not args.skip_real:
        print(f"running at real rate for {args.real_minutes:g} min ...", file=sys.stderr)
        plan = Plan(speed=1.0, real_s=args.real_minutes * 60, sample_every_s=5.0,
                    audio=args.audio, sqlite_cache_kib=args.sqlite_cache_kib)  # fmt: skip
        real = await session(plan)
        print_real(real, args.real_minutes, audio=args.audio)
    if not args.skip_scaled:
        print(f"running {args.hours:g} h of session at {args.speed:g}x ...", file=sys.stderr)

        def progress(s: Sample) -> None:
            if int(s.real_s) % 30 < 3:
                print(f"  {s.session_s / 60:.0f} min: {s.mem.line()}", file=sys.stderr)

        plan = Plan(speed=args.speed, session_s=args.hours * 3600, sample_every_s=3.0,
                    audio=args.audio, traced=args.tracemalloc,
                    sqlite_cache_kib=args.sqlite_cache_kib, on_sample=progress)  # fmt: skip
        scaled = await session(plan)
        print_scaled(scaled, args.speed, args.hours)
    if real is not None:
        print_breakdown(real)
    print(f"  machine: {machine()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--real-minutes", type=float, default=3.0)
    parser.add_argument("--speed", type=float, default=60.0)
    parser.add_argument("--hours", type=float, default=3.0)
    parser.add_argument("--audio", action="store_true", help="music and alarm speaker on")
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument(
        "--sqlite-cache-kib", type=int, default=None, help="the daemon's SQLite cache, to compare"
    )
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument("--skip-scaled", action="store_true")
    asyncio.run(main(parser.parse_args()))
