"""The device simulator: plays a scenario onto virtual serial ports in the devices' own protocols.

The patient's vitals and what the oximeter makes of them are computed in bulk up front
(`physiology`, `oximetry`); each device player then renders its protocol for the session
time due, on its own pseudo-terminal. Bytes the host sends (commands) are read from each
port as they arrive and handed to that port's player. `on_bytes(t, port, direction, data)`
sees everything, `<` from a device and `>` to it, with non-decreasing times, which is what
a capture file needs (DESIGN §6).

A `cable_pull` unplugs a port for a while; its path stays the same across the pull because
such a port is served under a stable name (a symlink to the current pty, like
`/dev/serial/by-id/...`), in `link_dir` or a temporary directory.

`sessiond demo` runs it `forever` and hands it new arrays as the session goes
(`set_patient`, from `sessiond.sim.demo`): the devices play on after the scenario's end.

With `nibp_every_s` the simulator is also the host of its NIBP modules ("bench host"): it
starts a measurement every so often and drives it to the BP data as a daemon would, so that
a capture made without a daemon has BP readings (and its `>` lines) to replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Self, TextIO

import numpy as np

from sessiond.clock import LoopClock
from sessiond.devices.suntech import (
    Ack,
    AckCode,
    SuntechAdvantageDecoder,
    abort_command,
    cuff_pressure_command,
    read_result_command,
    start_measurement_command,
)
from sessiond.errors import ConfigError
from sessiond.records.capture import CaptureWriter
from sessiond.sim.devices import (
    DEFAULT_DEVICE_START,
    DEFAULT_SERIAL,
    PLAYERS,
    DevicePlayer,
    Session,
    SuntechPlayer,
)
from sessiond.sim.oximetry import in_window, oximeter_track
from sessiond.sim.physiology import simulate_patient
from sessiond.sim.pty import VirtualSerialPort
from sessiond.sim.scenario import (
    DEFAULT_DEVICES,
    BpFailure,
    CablePull,
    Garbage,
    Silence,
    port_problems,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from datetime import datetime
    from types import TracebackType

    import numpy.typing as npt

    from sessiond.sim.oximetry import OximeterTrack
    from sessiond.sim.physiology import Vitals
    from sessiond.sim.scenario import Scenario

logger = logging.getLogger(__name__)

#: The oximeter's port name, as in the default `[devices.spo2]` configuration.
SPO2_PORT = "spo2"
#: The NIBP module's port name.
NIBP_PORT = "nibp"
#: The bench host (`nibp_every_s`): how long it waits for an answer, polls the cuff, and
#: waits for `K` before it aborts, session seconds.
BENCH_POLL_S = 2.0
BENCH_MEASUREMENT_TIMEOUT_S = 90.0


class Simulator:
    """Simulated bedside devices playing one scenario, each on its own pseudo-terminal.

    `devices` maps port names to protocols (default: the scenario's `[devices]`, else
    `DEFAULT_DEVICES`). After `start()`, `ports[name].path` is what a reader opens.
    """

    def __init__(
        self,
        *,
        scenario: Scenario,
        clock: LoopClock,
        devices: Mapping[str, str] | None = None,
        on_bytes: Callable[[float, str, str, bytes], None] | None = None,
        link_dir: Path | None = None,
        nibp_every_s: float | None = None,
        device_start: datetime = DEFAULT_DEVICE_START,
        serial: str = DEFAULT_SERIAL,
        write_gap_real_s: float = 0.0,
    ) -> None:
        self.scenario = scenario
        self.clock = clock
        self.devices: dict[str, str] = dict(devices or scenario.devices or DEFAULT_DEVICES)
        problems = port_problems(scenario, self.devices)
        unknown = sorted(set(self.devices.values()) - set(PLAYERS))
        if unknown:
            problems.append(("devices", f"the simulator cannot play {', '.join(unknown)}"))
        if problems:
            raise ConfigError([f"{scenario.name}: {key}: {problem}" for key, problem in problems])
        self.on_bytes = on_bytes
        self.vitals = simulate_patient(scenario)
        self.track = oximeter_track(scenario, self.vitals)
        self.session = Session(
            scenario=scenario,
            vitals=self.vitals,
            track=self.track,
            garbage=self._garbage(),
            device_start=device_start,
            serial=serial,
        )
        failures = [e for e in scenario.events if isinstance(e, BpFailure)]
        self.players: dict[str, DevicePlayer] = {}
        for name, protocol in self.devices.items():
            cls = PLAYERS[protocol]
            emit = self._emitter(name)
            if issubclass(cls, SuntechPlayer):
                self.players[name] = cls(
                    name=name, session=self.session, emit=emit, failures=failures
                )
            else:
                player = cls(name=name, session=self.session, emit=emit)
                player.write_gap_real_s = write_gap_real_s
                self.players[name] = player
        self.ports: dict[str, VirtualSerialPort] = {}
        self._pulls = sorted(
            (e for e in scenario.events if isinstance(e, CablePull)), key=lambda e: e.at_s
        )
        # Replugs sort before pulls at the same time (a port back in before another goes).
        self._cable_actions = sorted(
            [(e.at_s, 1, e.port) for e in self._pulls]
            + [
                (e.at_s + e.duration_s, 0, e.port)
                for e in self._pulls
                if e.at_s + e.duration_s < scenario.duration_s
            ]
        )
        self._cables_done = 0
        #: Per port, the windows (start, end) in which the device sends nothing.
        self._silences: dict[str, list[tuple[float, float]]] = {}
        for e in scenario.events:
            if isinstance(e, Silence):
                self._silences.setdefault(e.port, []).append((e.at_s, e.at_s + e.duration_s))
        self._link_dir = link_dir
        self._own_link_dir: Path | None = None
        self._last_t = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watched: dict[str, int] = {}
        if nibp_every_s is not None and nibp_every_s <= 0:
            msg = f"nibp_every_s must be positive, not {nibp_every_s}"
            raise ValueError(msg)
        self.nibp_every_s = nibp_every_s
        #: The bench host's view of each NIBP module's replies.
        self._taps: dict[str, SuntechAdvantageDecoder] = {}

    def _garbage(self) -> dict[str, npt.NDArray[np.int64]]:
        n = self.scenario.duration_s
        seconds = np.arange(n, dtype=np.float64)
        out: dict[str, npt.NDArray[np.int64]] = {}
        for event in self.scenario.events:
            if isinstance(event, Garbage):
                burst = out.setdefault(event.port, np.zeros(n, dtype=np.int64))
                # A burst goes before every second's data in the window; a zero-length window
                # still catches the next second.
                burst[in_window(seconds, event.at_s, max(event.duration_s, 1.0))] += event.bytes
        return out

    # --- ports ---

    def start(self) -> None:
        """Create the devices' ports (their paths are then in `self.ports`)."""
        if self.ports:
            return
        folder = self._link_dir
        if folder is None and self._pulls:
            folder = self._own_link_dir = Path(tempfile.mkdtemp(prefix="sessiond-sim-"))
        for name in self.devices:
            link = None if folder is None else Path(folder) / name
            self.ports[name] = VirtualSerialPort(name, link=link)

    def unplug(self, name: str) -> None:
        """Pull the cable of port `name` (its path disappears; the device resets)."""
        self._unwatch(name)
        self.ports[name].unplug()
        self.players[name].unplugged()
        logger.info("%s: cable pulled", name)

    def replug(self, name: str) -> None:
        """Plug the cable of port `name` back in, at the same path."""
        port = self.ports[name]
        port.replug()
        self._watch(name)
        logger.info("%s: cable back in (%s → %s)", name, port.path, port.tty_path)

    # --- bytes ---

    def _report(self, t: float, port: str, direction: str, data: bytes) -> None:
        if self.on_bytes is not None:
            # Scheduled times of different ports interleave with arrival times of commands:
            # never report one earlier than what was already reported.
            t = max(t, self._last_t)
            self._last_t = t
            self.on_bytes(t, port, direction, data)

    def _emitter(self, name: str) -> Callable[[list[tuple[float, bytes]]], None]:
        def emit(pieces: list[tuple[float, bytes]]) -> None:
            # Cables go in and out at their own time, also between the pieces of one write:
            # a line due at the moment of a replug gets through, one due at a pull does not.
            i = 0
            while i < len(pieces):
                self._apply_cables(pieces[i][0])
                until = self._next_cable_t()
                j = i + 1
                while j < len(pieces) and pieces[j][0] < until:
                    j += 1
                self._write(name, pieces[i:j])
                i = j

        return emit

    def _write(self, name: str, pieces: list[tuple[float, bytes]]) -> None:
        port = self.ports[name]
        if not port.plugged:
            return  # a pulled cable: nothing reaches the host
        silences = self._silences.get(name)
        if silences:  # a silent device: its data, and its answers, never leave it
            pieces = [p for p in pieces if not any(a <= p[0] < b for a, b in silences)]
            if not pieces:
                return
        port.write(b"".join(data for _, data in pieces))
        tap = self._taps.get(name)
        for t, data in pieces:
            self._report(t, name, "<", data)
            if tap is not None:
                tap.feed(data, t)

    def _watch(self, name: str) -> None:
        fd = self.ports[name].host_fd
        if self._loop is None or fd is None or name in self._watched:
            return
        self._loop.add_reader(fd, self._host_readable, name)
        self._watched[name] = fd

    def _unwatch(self, name: str) -> None:
        fd = self._watched.pop(name, None)
        if fd is not None and self._loop is not None:
            self._loop.remove_reader(fd)

    def _host_readable(self, name: str) -> None:
        data = self.ports[name].read()
        if not data:
            return
        t = self.clock.now()
        self._report(t, name, ">", data)
        self.players[name].receive(data, t)

    # --- running ---

    def set_patient(self, *, vitals: Vitals, track: OximeterTrack, origin: int) -> None:
        """Play these arrays from now on; element `k` is session second `origin + k`.

        What the devices already sent stays as it was: the caller keeps the arrays' past.
        """
        self.vitals, self.track = vitals, track
        session = self.session
        session.vitals, session.track, session.origin = vitals, track, origin
        for player in self.players.values():
            player.replanned()

    async def run(self, *, forever: bool = False) -> None:
        """Play every device until the scenario ends (catching up if late); `forever`: on
        until cancelled, from whatever arrays `set_patient` gives (the demo's live plan)."""
        self.start()
        self._loop = asyncio.get_running_loop()
        for name in self.ports:
            self._watch(name)
        end = math.inf if forever else self.scenario.duration_s
        try:
            async with asyncio.TaskGroup() as tg:
                for name, player in self.players.items():
                    tg.create_task(player.run(self.clock, end), name=f"sessiond.sim[{name}]")
                if self._pulls:
                    tg.create_task(self._cable_pulls(), name="sessiond.sim.cables")
                if self.nibp_every_s is not None:
                    for name, player in self.players.items():
                        if isinstance(player, SuntechPlayer):
                            tg.create_task(
                                self._bench_host(name, self.nibp_every_s),
                                name=f"sessiond.sim[{name}].host",
                            )
            await self.clock.sleep_until(end)
        finally:
            for name in list(self._watched):
                self._unwatch(name)
        logger.info(
            "scenario %s ended: %s",
            self.scenario.name,
            ", ".join(
                f"{name} wrote {p.written_bytes} bytes, dropped {p.overflow_bytes}"
                for name, p in self.ports.items()
            ),
        )

    async def _cable_pulls(self) -> None:
        """Pull and replug cables on time, also when no device has data due then."""
        for t, _, _ in self._cable_actions:
            await self.clock.sleep_until(t)
            self._apply_cables(t)

    def _apply_cables(self, t: float) -> None:
        """Pull or plug back every cable due by `t` (in order; each once)."""
        actions = self._cable_actions
        while self._cables_done < len(actions) and actions[self._cables_done][0] <= t:
            _, pull, name = actions[self._cables_done]
            self._cables_done += 1
            if pull:
                self.unplug(name)
            else:
                self.replug(name)

    def _next_cable_t(self) -> float:
        actions = self._cable_actions
        return actions[self._cables_done][0] if self._cables_done < len(actions) else math.inf

    # --- the bench host ---

    async def _bench_host(self, name: str, every_s: float) -> None:
        """Drive NIBP module `name` as a host would: a measurement every `every_s` from 0."""
        decoder = self._taps[name] = SuntechAdvantageDecoder(device=name)
        t = 0.0
        while t < self.scenario.duration_s:
            await self.clock.sleep_until(t)
            await self._bench_measure(name, decoder, t)
            t += every_s

    def _bench_send(self, name: str, data: bytes, t: float) -> None:
        # Stamped with the bench host's own schedule, as the devices' data is, so that a
        # capture made at high speed keeps exact times whatever the event loop's lag.
        if not self.ports[name].plugged:
            return  # the cable is out: the command goes nowhere
        self._report(t, name, ">", data)
        self.players[name].receive(data, t)

    async def _bench_measure(
        self, name: str, decoder: SuntechAdvantageDecoder, start: float
    ) -> None:
        decoder.take_replies()
        # The module answers at once (in `receive`), so the reply is already decoded.
        self._bench_send(name, start_measurement_command(), start)
        if Ack(t=0.0, code=AckCode.RECEIVED) not in _untimed(decoder.take_replies()):
            return  # no answer or busy: a daemon would report the failure and go on
        t = start
        while t < start + BENCH_MEASUREMENT_TIMEOUT_S:
            t += BENCH_POLL_S
            await self.clock.sleep_until(t)
            self._bench_send(name, cuff_pressure_command(), t)
            if Ack(t=0.0, code=AckCode.COMPLETED) in _untimed(decoder.take_replies()):
                self._bench_send(name, read_result_command(), t)
                decoder.take_replies()
                return
        self._bench_send(name, abort_command(), t)

    def close(self) -> None:
        """Close every port (and the stable names the simulator made)."""
        for name in list(self._watched):
            self._unwatch(name)
        for port in self.ports.values():
            port.close()
        if self._own_link_dir is not None:
            shutil.rmtree(self._own_link_dir, ignore_errors=True)
            self._own_link_dir = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _untimed(replies: Sequence[object]) -> list[Ack]:
    """Acknowledgements without their times, to compare by code."""
    return [Ack(t=0.0, code=r.code) for r in replies if isinstance(r, Ack)]


async def run_sim(
    *,
    scenario: Scenario,
    speed: float,
    devices: Mapping[str, str] | None = None,
    capture: Path | None = None,
    link_dir: Path | None = None,
    nibp_every_s: float | None = None,
    on_bytes: Callable[[float, str, str, bytes], None] | None = None,
    out: TextIO | None = None,
) -> int:
    """`sessiond sim`: print `PORT PATH PROTOCOL` per device, play `scenario` to its end or
    Ctrl-C; with `capture`, write every byte both ways to that capture file. Returns 0."""
    clock = LoopClock(speed=speed)
    sim = Simulator(
        scenario=scenario,
        clock=clock,
        devices=devices,
        link_dir=link_dir,
        nibp_every_s=nibp_every_s,
    )
    try:
        writer = CaptureWriter(capture, sim.devices) if capture is not None else None
    except OSError as exc:
        raise ConfigError([f"--capture: {capture}: {exc.strerror or exc}"]) from None

    def report(t: float, port: str, direction: str, data: bytes) -> None:
        if writer is not None:
            writer.write(t, port, direction, data)
        if on_bytes is not None:
            on_bytes(t, port, direction, data)

    sim.on_bytes = report if writer is not None or on_bytes is not None else None
    stream = out or sys.stdout
    try:
        with sim:
            # Session time 0 is when the devices start, not when the model was computed.
            sim.clock = LoopClock(speed=speed)
            for name, port in sim.ports.items():
                stream.write(f"{name} {port.path} {sim.devices[name]}\n")
            stream.flush()
            # Ctrl-C (asyncio.run cancels the main task) is the normal way to stop early.
            with contextlib.suppress(asyncio.CancelledError):
                await sim.run()
    finally:
        if writer is not None:
            writer.close()
    return 0
