"""The device simulator: plays a scenario onto virtual serial ports in the devices' own protocols.

The patient's vitals are computed in bulk up front (`physiology`); the run loop only looks
them up and writes one Masimo line per session second, scheduled by absolute session time
so it never drifts, whatever the speed factor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Self

import numpy as np

from sessiond.clock import LoopClock
from sessiond.sim.masimo import EXC_SENSOR_OFF, EXC_SET, masimo_line
from sessiond.sim.physiology import simulate_patient
from sessiond.sim.pty import VirtualSerialPort
from sessiond.sim.scenario import Garbage, SensorOff

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    import numpy.typing as npt

    from sessiond.sim.scenario import Scenario

logger = logging.getLogger(__name__)

#: The scenario random stream line noise is drawn from (independent of the physiology).
GARBAGE_STREAM = 1
#: The oximeter's port name, as in the default `[devices.spo2]` configuration.
SPO2_PORT = "spo2"
#: The oximeter's local clock at session time 0 (naive: a device clock has no zone).
DEFAULT_DEVICE_START = datetime(2026, 1, 5, 9, 0, 0)  # noqa: DTZ001
DEFAULT_SERIAL = "0000012345"


class Simulator:
    """Simulated bedside devices playing one scenario on pseudo-terminals."""

    def __init__(
        self,
        *,
        scenario: Scenario,
        clock: LoopClock,
        on_bytes: Callable[[float, str, bytes], None] | None = None,
        device_start: datetime = DEFAULT_DEVICE_START,
        serial: str = DEFAULT_SERIAL,
    ) -> None:
        self.scenario = scenario
        self.clock = clock
        self.on_bytes = on_bytes
        self.device_start = device_start
        self.serial = serial
        self.vitals = simulate_patient(scenario)
        self.ports: dict[str, VirtualSerialPort] = {}
        #: Oximeter lines written so far (the next line is for session second `lines_written`).
        self.lines_written = 0
        n = scenario.duration_s
        self._sensor_off = np.zeros(n, dtype=np.bool_)
        self._garbage = np.zeros(n, dtype=np.int64)
        seconds = np.arange(n, dtype=np.float64)
        for event in scenario.events:
            if isinstance(event, SensorOff):
                self._sensor_off |= _in_window(seconds, event.at_s, event.duration_s)
            elif isinstance(event, Garbage):
                # A burst goes before every line in the window; a zero-length window still
                # catches the next line.
                inside = _in_window(seconds, event.at_s, max(event.duration_s, 1.0))
                self._garbage[inside] += event.bytes
        self._rng = scenario.rng(GARBAGE_STREAM)

    def start(self) -> None:
        """Create the devices' ports (their paths are then in `self.ports`)."""
        if not self.ports:
            self.ports[SPO2_PORT] = VirtualSerialPort(SPO2_PORT)

    def line(self, k: int) -> bytes:
        """The oximeter line for session second `k`."""
        device_time = self.device_start + timedelta(seconds=k)
        if self._sensor_off[k]:
            # Sensor off replaces the SET bit in the EXC field and blanks every value.
            return masimo_line(
                device_time=device_time,
                spo2=None,
                pr=None,
                pi=None,
                exc=EXC_SENSOR_OFF,
                serial=self.serial,
            )
        return masimo_line(
            device_time=device_time,
            spo2=int(self.vitals.spo2[k]),
            pr=int(self.vitals.pr[k]),
            pi=float(self.vitals.pi[k]),
            exc=EXC_SET,
            serial=self.serial,
        )

    async def run(self) -> None:
        """Write one line per session second until the scenario ends (catching up if late)."""
        self.start()
        for k in range(self.lines_written, self.scenario.duration_s):
            # Absolute schedule: a late wake-up returns at once, so missed lines catch up.
            await self.clock.sleep_until(k)
            self._emit(k)
        await self.clock.sleep_until(self.scenario.duration_s)
        logger.info(
            "scenario %s ended: %d lines, %s",
            self.scenario.name,
            self.lines_written,
            ", ".join(f"{name} dropped {p.overflow_bytes} bytes" for name, p in self.ports.items()),
        )

    def _emit(self, k: int) -> None:
        port = self.ports[SPO2_PORT]
        if self._garbage[k]:
            self._write(
                k, port, self._rng.integers(0, 256, int(self._garbage[k]), np.uint8).tobytes()
            )
        self._write(k, port, self.line(k))
        self.lines_written = k + 1

    def _write(self, k: int, port: VirtualSerialPort, data: bytes) -> None:
        port.write(data)
        if self.on_bytes is not None:
            # The scheduled time, not the wake-up time: the device sent it at k.
            self.on_bytes(float(k), port.name, data)

    def close(self) -> None:
        """Close every port."""
        for port in self.ports.values():
            port.close()

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


def _in_window(
    seconds: npt.NDArray[np.float64], start: float, length: float
) -> npt.NDArray[np.bool_]:
    return (seconds >= start) & (seconds < start + length)


async def run_sim(
    *,
    scenario: Scenario,
    speed: float,
    capture: Callable[[float, str, bytes], None] | None,
) -> int:
    """`sessiond sim`: print each port's path, play `scenario` to its end or Ctrl-C; returns 0."""
    clock = LoopClock(speed=speed)
    with Simulator(scenario=scenario, clock=clock, on_bytes=capture) as sim:
        for name, port in sim.ports.items():
            sys.stdout.write(f"{name} {port.path}\n")
        sys.stdout.flush()
        # Ctrl-C (asyncio.run cancels the main task) is the normal way to stop early.
        with contextlib.suppress(asyncio.CancelledError):
            await sim.run()
    return 0
