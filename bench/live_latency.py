"""Alarm latency of the live daemon, from the pty's last byte to the bus, MQTT and the console.

    python bench/live_latency.py [--alarms 1000] [--mqtt-nagle] [--broker-nagle]
                                 [--compare-nagle]

Starts a real Mosquitto on a free loopback port, a pseudo-terminal that this script drives
as a Masimo Rad-8 ("ASCII 1" lines from the simulator's encoder), the daemon in its own
process as the clinic runs it (`sessiond run --config FILE`, through `bench/live_daemon.py`,
which also notes when each alarm transition reaches the bus, the WebSocket and the MQTT
client), one MQTT subscriber that follows the room as the clinic overview does (`state`,
`alarm`, `event`, `vitals`) and one signed-in console client on `/ws`. The broker runs with
`set_tcp_nodelay true`, as `deploy/mosquitto/mosquitto.conf` ships it.

The bench config makes `spo2_low` high immediate both ways (delay 0, not latched, clear
delay 0); the script then alternates the SpO2 of one line between 80-83 % and 97 %, so that
each line is one alarm transition (`active`, then `cleared`). For each, the clock starts
just before the `os.write` of the whole line (CLOCK_MONOTONIC, one clock for every process)
and stops when the transition is on the daemon's bus, when its `event` reaches the MQTT
subscriber, when the new `alarm` list does, and when the console's WebSocket delivers it.
One transition at a time: the next line goes 5-25 ms (random) after everything arrived.
After each, the bare broker round trip is measured on the same broker with the same client
library: a QoS 1 publish from a second aiomqtt client to the same subscriber.

`--mqtt-nagle` runs the daemon's MQTT socket without TCP_NODELAY, `--broker-nagle` the
broker's sockets without it (Mosquitto's default); `--compare-nagle` runs the three one after
the other. Prints p50 / p99 / max beside the targets and the machine. Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import tempfile
import time
import tty
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiomqtt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from livekit import (  # type: ignore[import-not-found]  # beside this file
    Console,
    daemon_config,
    machine,
    percentiles,
    start_daemon,
)

from sessiond.sim.masimo import masimo_line
from tests.mosquitto import HOST, Mosquitto

if TYPE_CHECKING:
    from collections.abc import Callable

ROOM = "bench"
ALARM = "spo2_low"
#: The bench's rule: `spo2_low` high raises and clears on the reading that crosses it.
CONFIG = """
[alarms.spo2_low]
clear_delay_s = 0
[alarms.spo2_low.high]
limit = 85
delay_s = 0
latched = false
[music]
enabled = false
[alarm_audio]
enabled = false
"""
#: Longest one transition may take to arrive everywhere before the run gives up.
STEP_TIMEOUT_S = 10.0
#: The targets (ms): on the bus, and at a subscriber beyond the bare broker round trip.
BUS_P99_MS = 5.0
OVER_RTT_MS = 5.0

Seen = list[tuple[float, str]]


@dataclass
class Arrivals:
    """When (monotonic s) each alarm transition and probe was seen, and where."""

    mqtt_event: Seen = field(default_factory=list)
    mqtt_list: list[tuple[float, bool]] = field(default_factory=list)
    ws: Seen = field(default_factory=list)
    rtt: dict[str, float] = field(default_factory=dict)
    readings: int = 0
    online: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def mqtt(self, t: float, topic: str, payload: bytes) -> None:
        if topic == f"sessiond/{ROOM}/event":
            event = json.loads(payload)
            if event.get("type") == "alarm" and event.get("id") == ALARM:
                self.mqtt_event.append((t, event["state"]))
        elif topic == f"sessiond/{ROOM}/alarm":
            self.mqtt_list.append((t, any(a.get("id") == ALARM for a in json.loads(payload))))
        elif topic == f"sessiond/{ROOM}/availability":
            self.online = payload == b"online"
        elif topic == "bench/rtt":
            self.rtt[payload.decode()] = t
        self.changed.set()

    def console(self, t: float, message: dict[str, Any]) -> None:
        if message.get("type") == "alarm" and message.get("id") == ALARM:
            self.ws.append((t, message["state"]))
        elif message.get("type") == "reading":
            self.readings += 1
        self.changed.set()

    async def until(self, done: Callable[[], bool]) -> None:
        async with asyncio.timeout(STEP_TIMEOUT_S):
            while not done():
                self.changed.clear()
                await self.changed.wait()


def first_after(seen: Seen, t0: float, state: str) -> float | None:
    return next((t for t, s in seen if t >= t0 and s == state), None)


async def listen(client: aiomqtt.Client, arrivals: Arrivals) -> None:
    async for message in client.messages:
        now = time.monotonic()
        payload = message.payload if isinstance(message.payload, bytes) else b""
        arrivals.mqtt(now, message.topic.value, payload)


def write_line(master: int, spo2: int) -> tuple[float, float]:
    """One Rad-8 line in one `os.write`: the times just before it and just after it returns.

    The clock starts before the write. Its return can come after the daemon has handled the
    line (on a busy machine the daemon's wake-up preempts the writer inside the system call),
    so a clock started after it would under-count; started before, the figure includes the
    write itself (microseconds unless preempted) and is an upper bound.
    """
    line = masimo_line(device_time=datetime.now(), spo2=spo2, pr=72, pi=3.1)  # noqa: DTZ005
    before = time.monotonic()
    written = os.write(master, line)
    after = time.monotonic()
    assert written == len(line)
    return before, after


@dataclass
class Figures:
    """Seconds from the line's write to each place, one entry per transition."""

    bus: list[float] = field(default_factory=list)
    ws_out: list[float] = field(default_factory=list)
    mqtt_out: list[float] = field(default_factory=list)
    mqtt: list[float] = field(default_factory=list)
    mqtt_list: list[float] = field(default_factory=list)
    ws: list[float] = field(default_factory=list)
    rtt: list[float] = field(default_factory=list)
    write: list[float] = field(default_factory=list)
    exit_code: int | None = None
    seconds: float = 0.0


async def transition(
    i: int, master: int, pub: aiomqtt.Client, arrivals: Arrivals, figures: Figures
) -> tuple[float, str]:
    """Write the line of transition `i`, wait for it everywhere, then probe the broker."""
    low = i % 2 == 0
    state = "active" if low else "cleared"
    t0, t_written = write_line(master, 80 + (i // 2) % 4 if low else 97)
    figures.write.append(t_written - t0)

    def arrived() -> bool:
        return (
            first_after(arrivals.mqtt_event, t0, state) is not None
            and first_after(arrivals.ws, t0, state) is not None
            and any(t >= t0 and on == low for t, on in arrivals.mqtt_list)
        )

    await arrivals.until(arrived)
    figures.mqtt.append((first_after(arrivals.mqtt_event, t0, state) or t0) - t0)
    figures.ws.append((first_after(arrivals.ws, t0, state) or t0) - t0)
    figures.mqtt_list.append(next(t for t, on in arrivals.mqtt_list if t >= t0 and on == low) - t0)
    # The bare broker round trip, now, through the same broker and library.
    key = str(i)
    t_pub = time.monotonic()
    await pub.publish("bench/rtt", key, qos=1)
    await arrivals.until(lambda: key in arrivals.rtt)
    figures.rtt.append(arrivals.rtt[key] - t_pub)
    return t0, state


def inside_figures(times_file: Path, steps: list[tuple[float, str]], figures: Figures) -> None:
    """The daemon's own notes: when each transition reached the bus, WebSocket and MQTT."""
    inside = json.loads(times_file.read_text())
    for where, values in (("bus", figures.bus), ("ws", figures.ws_out), ("mqtt", figures.mqtt_out)):
        seen = [(t, s) for t, w, alarm_id, s in inside if w == where and alarm_id == ALARM]
        for t0, state in steps:
            t = first_after(seen, t0, state)
            if t is not None:
                values.append(t - t0)


async def run(alarms: int, *, nagle: bool, broker_nagle: bool) -> Figures:
    figures = Figures()
    started = time.monotonic()
    broker_config = () if broker_nagle else ("set_tcp_nodelay true",)
    with (
        tempfile.TemporaryDirectory() as tmp,
        Mosquitto(Path(tmp), extra_config=broker_config) as broker,
    ):
        workdir = Path(tmp)
        master, slave = os.openpty()
        tty.setraw(slave)
        config = daemon_config(
            workdir / "bench.toml",
            workdir=workdir,
            broker_port=broker.port,
            devices={"spo2": (os.ttyname(slave), "masimo-ascii1")},
            extra=CONFIG,
        )
        arrivals = Arrivals()
        times_file = workdir / "times.json"
        steps: list[tuple[float, str]] = []
        async with (
            aiomqtt.Client(HOST, broker.port, identifier="bench-sub") as sub,
            aiomqtt.Client(HOST, broker.port, identifier="bench-pub") as pub,
        ):
            leaves = ("event", "alarm", "availability", "state", "vitals")
            await sub.subscribe([(f"sessiond/{ROOM}/{leaf}", 1) for leaf in leaves])
            await sub.subscribe("bench/rtt", qos=1)
            listener = asyncio.create_task(listen(sub, arrivals))
            args = ["--times", str(times_file)] + ["--mqtt-nagle"] * nagle
            daemon = await start_daemon(config, workdir=workdir, args=args)
            try:
                async with Console(daemon.console_url, arrivals.console):
                    # Valid lines until the console shows readings and the bridge is online.
                    async with asyncio.timeout(30):
                        while arrivals.readings < 3 or not arrivals.online:
                            write_line(master, 97)
                            await asyncio.sleep(0.1)
                    for i in range(alarms):
                        steps.append(await transition(i, master, pub, arrivals, figures))
                        await asyncio.sleep(random.uniform(0.005, 0.025))
                        if (i + 1) % 250 == 0:
                            print(f"  {i + 1} transitions", file=sys.stderr, flush=True)
            finally:
                figures.exit_code = await daemon.stop()
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener
                os.close(master)
                os.close(slave)
        inside_figures(times_file, steps, figures)
    figures.seconds = time.monotonic() - started
    return figures


def row(name: str, seconds: list[float], target: str) -> str:
    if not seconds:
        return f"| {name} | - | - | - | 0 | {target} |"
    p50, p99, worst = percentiles([1000 * s for s in seconds])
    return f"| {name} | {p50:.2f} | {p99:.2f} | {worst:.2f} | {len(seconds)} | {target} |"


def verdict(name: str, values: list[float], rtt: tuple[float, float, float]) -> str:
    p50, p99, worst = percentiles([1000 * s for s in values])
    met = "meets" if p99 <= rtt[1] + OVER_RTT_MS else "misses"
    return (
        f"  {name}: p50 {p50:.2f} vs {rtt[0]:.2f} + 5, p99 {p99:.2f} vs {rtt[1]:.2f} + 5 "
        f"({met}), max {worst:.2f} vs {rtt[2]:.2f} + 5"
    )


def print_figures(figures: Figures, *, nagle: bool, broker_nagle: bool) -> None:
    print(
        f"alarm latency from the pty's last byte: {len(figures.mqtt)} transitions of {ALARM}, "
        f"TCP_NODELAY on the daemon's MQTT socket: {'no' if nagle else 'yes'}, on the "
        f"broker's: {'no' if broker_nagle else 'yes'}; {figures.seconds:.0f} s, daemon exit "
        f"{figures.exit_code}"
    )
    print("| from the line's write to | p50 ms | p99 ms | max ms | n | target |")
    print("|---|---|---|---|---|---|")
    print(row("the bus (in the daemon)", figures.bus, f"p99 <= {BUS_P99_MS:g} ms"))
    print(row("the WebSocket send (in the daemon)", figures.ws_out, ""))
    print(row("the MQTT client's publish (in the daemon)", figures.mqtt_out, ""))
    print(row("the console's WebSocket client", figures.ws, "<= broker RTT + 5 ms"))
    print(row("the MQTT subscriber: `event`", figures.mqtt, "<= broker RTT + 5 ms"))
    print(row("the MQTT subscriber: `alarm` list", figures.mqtt_list, "(sent after `event`)"))
    print(row("bare broker round trip (RTT)", figures.rtt, "(reference, same run)"))
    print(row("the `os.write` itself", figures.write, "(included above)"))
    behind = [m - w for m, w in zip(figures.mqtt, figures.ws, strict=True)]
    print(row("MQTT `event` minus WebSocket arrival", behind, "(Nagle shows here)"))
    if figures.rtt:
        rtt = percentiles([1000 * s for s in figures.rtt])
        print(verdict("WebSocket", figures.ws, rtt))
        print(verdict("MQTT `event`", figures.mqtt, rtt))
    print(f"  machine: {machine()}")


async def main(args: argparse.Namespace) -> None:
    modes = [(args.mqtt_nagle, args.broker_nagle)]
    if args.compare_nagle:
        modes = [(False, False), (True, False), (False, True)]
    for nagle, broker_nagle in modes:
        figures = await run(args.alarms, nagle=nagle, broker_nagle=broker_nagle)
        print_figures(figures, nagle=nagle, broker_nagle=broker_nagle)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--alarms", type=int, default=1000, help="alarm transitions (>= 1000)")
    parser.add_argument(
        "--mqtt-nagle", action="store_true", help="the daemon's MQTT socket without TCP_NODELAY"
    )
    parser.add_argument(
        "--broker-nagle", action="store_true", help="the broker's sockets without TCP_NODELAY"
    )
    parser.add_argument(
        "--compare-nagle", action="store_true", help="with TCP_NODELAY, then without on each side"
    )
    asyncio.run(main(parser.parse_args()))
