"""A serial link: opens a device port, feeds its decoder, and reopens it when it fails.

The reader never blocks the event loop (pyserial's asyncio layer registers the port's file
descriptor with the loop). A read error, end of file or silence longer than the protocol's
watchdog are all one thing: the link is down. It is closed fully, reported, and reopened
with backoff by path (so a `/dev/serial/by-id/...` name finds a re-enumerated device).

A streaming device is connected when valid data flows, not when its port opens: a port
that opens but stays silent is reported down once and retried with growing backoff, with
no connected/lost flapping and one log line, however long it stays so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import serial
import serial_asyncio_fast

from sessiond.devices.contec import ContecV7Decoder
from sessiond.devices.decoder import SendsWaveform
from sessiond.model import DeviceStatus, Waveform

if TYPE_CHECKING:
    from collections.abc import Callable

    from sessiond.clock import LoopClock
    from sessiond.devices.decoder import Decoder
    from sessiond.model import Reading

logger = logging.getLogger(__name__)

#: Reopen delays (session seconds): quick for a replugged cable, capped for a dead port.
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0


@dataclass(frozen=True, slots=True)
class LinkCommands:
    """What a protocol needs sent to keep streaming: once after each open, then periodically."""

    start: bytes = b""
    keepalive: bytes = b""
    keepalive_s: float | None = None


#: Protocols that stream only when asked (DESIGN §3: re-send start and keep-alive commands).
#: The others stream on their own.
LINK_COMMANDS: dict[str, LinkCommands] = {
    ContecV7Decoder.protocol: LinkCommands(
        start=ContecV7Decoder.start_command(),
        keepalive=ContecV7Decoder.keepalive_command(),
        keepalive_s=ContecV7Decoder.KEEPALIVE_INTERVAL_S,
    ),
}


class LinkDownError(Exception):
    """The port failed, closed or went silent."""


class _PortProtocol(asyncio.Protocol):
    def __init__(self, link: SerialLink) -> None:
        self._link = link
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self._link.received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


class SerialLink:
    """One device port: `run()` keeps it open and decoding until cancelled."""

    def __init__(
        self,
        *,
        name: str,
        path: str,
        decoder: Decoder,
        clock: LoopClock,
        on_readings: Callable[[list[Reading]], None],
        on_status: Callable[[DeviceStatus], None],
        on_bytes: Callable[[float, str, str, bytes], None] | None = None,
        baudrate: int | None = None,
        silence_timeout_s: float | None = None,
        on_open: Callable[[], None] | None = None,
        on_fed: Callable[[], None] | None = None,
        on_frames: Callable[[str, float], None] | None = None,
        on_waveform: Callable[[Waveform], None] | None = None,
    ) -> None:
        self.name = name
        self.path = path
        self.decoder = decoder
        self.connected = False
        self.reopens = 0
        self._clock = clock
        self._on_readings = on_readings
        self._on_status = on_status
        self._on_bytes = on_bytes
        self._baudrate = baudrate or decoder.serial.baudrate
        self._silence_s = silence_timeout_s or decoder.silence_timeout_s
        self._last_rx = 0.0
        self.on_open = on_open
        self.on_fed = on_fed
        #: Valid frames that gave no reading (they repeat the last one) arrived at `t`.
        self._on_frames = on_frames
        self._on_waveform = on_waveform
        self._waveform = decoder.waveform if isinstance(decoder, SendsWaveform) else None
        self._transport: asyncio.Transport | None = None
        self._reported = False
        self._down: asyncio.Future[str] | None = None

    def received(self, data: bytes) -> None:
        """Bytes from the port: stamp them, capture them, decode them."""
        t = self._clock.now()
        self._last_rx = t
        if self._on_bytes is not None:
            self._on_bytes(t, self.name, "<", data)
        decoder = self.decoder
        before = decoder.records
        readings = decoder.feed(data, t)
        fresh = decoder.records != before
        if fresh and decoder.streaming and not self.connected:
            self._set_connected(connected=True, detail=self.path)
        if readings:
            self._on_readings(readings)
        elif fresh and decoder.streaming and self._on_frames is not None:
            # Frames that repeat the last reading (a Contec between its readings).
            self._on_frames(self.name, t)
        if self._waveform is not None and self._on_waveform is not None:
            samples = self._waveform()
            if samples:
                self._on_waveform(Waveform(t=t, device=self.name, pleth=samples))
        if self.on_fed is not None:
            self.on_fed()

    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def send(self, data: bytes) -> bool:
        """Send a command to the device; False when the link is down."""
        if self._transport is None or self._transport.is_closing():
            return False
        if self._on_bytes is not None:
            self._on_bytes(self._clock.now(), self.name, ">", data)
        self._transport.write(data)
        return True

    def declare_lost(self, reason: str) -> None:
        """The device stopped answering (a command layer decides): close and reopen the port."""
        if self._down is not None and not self._down.done():
            self._down.set_result(reason)

    def report_connected(self, detail: str) -> None:
        """The device answered: for a device that only speaks when asked, this is the sign."""
        self._set_connected(connected=True, detail=detail)

    async def run(self) -> None:
        backoff = BACKOFF_FIRST_S
        while True:
            try:
                await self._session()
            except LinkDownError as exc:
                reason = str(exc)
            except (OSError, serial.SerialException) as exc:
                reason = f"cannot open {self.path}: {exc}"
            else:  # pragma: no cover - _session only returns by raising
                reason = "closed"
            if self.connected:  # data flowed since the last open: a fresh loss
                backoff = BACKOFF_FIRST_S
                logger.warning("%s: link down: %s", self.name, reason)
            elif not self._reported:
                logger.warning("%s: %s", self.name, reason)
            # Still down (a dead port, or one that opens but stays silent): said once.
            logger.debug("%s: %s; reopening in %.1f s", self.name, reason, backoff)
            self._set_connected(connected=False, detail=reason)
            await self._clock.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)
            self.reopens += 1

    async def _session(self) -> None:
        settings = self.decoder.serial
        loop = asyncio.get_running_loop()
        transport, protocol = await serial_asyncio_fast.create_serial_connection(
            loop,
            lambda: _PortProtocol(self),
            self.path,
            baudrate=self._baudrate,
            bytesize=settings.bytesize,
            parity=settings.parity,
            stopbits=settings.stopbits,
            exclusive=True,
        )
        assert isinstance(protocol, _PortProtocol)
        self._transport = transport
        self._last_rx = self._clock.now()
        self._down = loop.create_future()
        if self.on_open is not None:
            self.on_open()
        commands = LINK_COMMANDS.get(self.decoder.protocol, LinkCommands())
        if commands.start:
            self.send(commands.start)
        keepalive = None
        if commands.keepalive and commands.keepalive_s:
            keepalive = asyncio.create_task(
                self._keep_alive(commands.keepalive, commands.keepalive_s),
                name=f"sessiond.link[{self.name}].keepalive",
            )
        try:
            await self._watch(protocol.lost, self._down)
        finally:
            if keepalive is not None:
                keepalive.cancel()
            self._transport = None
            transport.close()
            # Wait for the port to be closed fully before it is opened again.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await asyncio.shield(protocol.lost)

    async def _keep_alive(self, command: bytes, every_s: float) -> None:
        # Contec V7 stops streaming after ~30 s unless it is asked again (devices.md §1.2).
        while True:
            await self._clock.sleep(every_s)
            self.send(command)

    async def _watch(
        self, lost: asyncio.Future[Exception | None], down: asyncio.Future[str]
    ) -> None:
        if not self.decoder.streaming:
            # Silence is normal here: only a closed port or an unanswered command is a loss.
            await asyncio.wait((lost, down), return_when=asyncio.FIRST_COMPLETED)
            if down.done():
                raise LinkDownError(down.result())
            exc = lost.result()
            msg = f"port closed: {exc}" if exc is not None else "port closed"
            raise LinkDownError(msg)
        # Never on less real time than a device timeout may take (`LoopClock.device_timeout`):
        # event-loop jitter is real time, and at 60x a 2.5 s watchdog would be 42 ms and flap.
        silence_s = self._clock.device_timeout(self._silence_s)
        while True:
            remaining = self._last_rx + silence_s - self._clock.now()
            if remaining <= 0:
                msg = f"no data for {silence_s:g} s"
                raise LinkDownError(msg)
            try:
                async with self._clock.timeout(remaining):
                    await asyncio.wait((lost, down), return_when=asyncio.FIRST_COMPLETED)
            except TimeoutError:
                continue
            if down.done():
                raise LinkDownError(down.result())
            exc = lost.result()
            msg = f"port closed: {exc}" if exc is not None else "port closed"
            raise LinkDownError(msg)

    def _set_connected(self, *, connected: bool, detail: str) -> None:
        if connected == self.connected and self._reported:
            return  # still down: said once, not at every retry
        self.connected = connected
        self._reported = True
        self._on_status(
            DeviceStatus(t=self._clock.now(), device=self.name, connected=connected, detail=detail)
        )
